"""The node agent's settings: one model, its flags, and their defaults.

It lives with the API because two programs depend on it: the agent parses
its command line into it (meshaccel_agent.main), and the operator renders the
agent DaemonSet's arguments from it (meshaccel_operator.deploy).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from meshaccel_api.flags import Flag, add_flags, from_namespace, render
from meshaccel_api.names import DEFAULT_BPFFS, DEFAULT_CACHE_DIR, DEFAULT_METRICS_ADDRESS
from meshaccel_api.v1alpha1 import FlowControl, MapSizes

Mode = Literal["standalone", "kubernetes", "cleanup"]
LogLevel = Literal["debug", "info", "warning", "error"]


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "kubernetes"
    # where the datapath lives
    cgroup: str | None = None  # None: the cgroup2 mount found in /proc/mounts
    bpffs: str = DEFAULT_BPFFS
    cache_dir: str = DEFAULT_CACHE_DIR
    map_sizes: MapSizes = Field(default_factory=MapSizes)
    flow_control: FlowControl = Field(default_factory=FlowControl)
    defines: list[str] = Field(default_factory=list)  # NAME=INT, development and upgrade tests
    ignore_selftest: bool = False
    # serving
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    liveness_timeout: float = 60.0
    log_level: LogLevel = "info"
    # standalone mode
    config: str | None = None
    # Kubernetes mode
    node_name: str = ""
    namespace: str = "meshaccel-system"
    daemonset: str = "meshaccel-agent"
    kubeconfig: str | None = None
    pod_cgroup_root: str = "/sys/fs/cgroup"
    status_interval: float = 10.0
    # cleanup
    wait: float = 10.0

    def parsed_defines(self) -> tuple[tuple[str, int], ...]:
        """--define NAME=INT values; ValueError naming the bad one."""
        out = []
        for d in self.defines:
            name, sep, value = d.partition("=")
            if not sep or not name or not value.lstrip("-").isdigit():
                raise ValueError(f"--define takes NAME=INT, got {d!r}")
            out.append((name, int(value)))
        return tuple(out)


FLAGS: tuple[Flag, ...] = (
    Flag("--cgroup", "cgroup", "cgroup2 directory for sockops (default: the cgroup2 mount from /proc/mounts)"),
    Flag("--bpffs", "bpffs", "bpf filesystem mount point"),
    Flag("--cache-dir", "cache_dir", "where fallback kernel headers are merged"),
    Flag("--sockhash-entries", "map_sizes.sockhash", "max accelerated sockets"),
    Flag("--pairs-entries", "map_sizes.pairs", "max handshakes tracked at once"),
    Flag("--netns-entries", "map_sizes.netns", "max enrolled network namespaces"),
    Flag("--endpoint-entries", "map_sizes.endpoints", "max enrolled IPv4 addresses"),
    Flag("--excluded-port-entries", "map_sizes.excludedPorts", "max excluded (namespace, port) pairs"),
    Flag("--flow-bound-bytes", "flow_control.boundBytes", "redirected bytes a slow reader may owe per connection"),
    Flag("--define", "defines", "extra compile-time define NAME=INT for the BPF programs (tests)"),
    Flag("--ignore-selftest", "ignore_selftest", "accelerate even if the kernel self-test fails (loud)"),
    Flag("--metrics-address", "metrics_address", "HOST:PORT for /metrics, /healthz and /readyz"),
    Flag("--liveness-timeout", "liveness_timeout", "/healthz fails when the main loop stalls this long (s)"),
    Flag("--log-level", "log_level", "log level"),
    Flag("--config", "config", "standalone: the enrolment file"),
    Flag("--node-name", "node_name", "kubernetes: this node", env="NODE_NAME"),
    Flag("--namespace", "namespace", "kubernetes: the agent's namespace", env="POD_NAMESPACE"),
    Flag("--daemonset", "daemonset", "kubernetes: own DaemonSet (gone at shutdown = uninstall)"),
    Flag("--kubeconfig", "kubeconfig", "kubernetes: default in-cluster service account, else $KUBECONFIG"),
    Flag("--pod-cgroup-root", "pod_cgroup_root", "kubernetes: where the kubelet's kubepods cgroups live"),
    Flag("--status-interval", "status_interval", "kubernetes: at most one counters-only status write per (s)"),
    Flag("--wait", "wait", "cleanup: seconds to wait for live connections"),
)

MODES: dict[str, str] = {
    "standalone": "enrolment from a YAML file (--config), no Kubernetes",
    "kubernetes": "enrolment from this node's NodeEnrolment",
    "cleanup": "uninstall: detach and unpin everything (live connections keep their maps)",
}


def parser(prog: str = "meshaccel-agent") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="The meshaccel node agent.")
    p.add_argument("mode", choices=list(MODES), help="; ".join(f"{k}: {v}" for k, v in MODES.items()))
    add_flags(p, AgentSettings, FLAGS)
    return p


def parse(argv: Sequence[str] | None = None, prog: str = "meshaccel-agent") -> AgentSettings:
    """The agent's command line -> settings (argparse exits on a bad flag)."""
    p = parser(prog)
    args = p.parse_args(argv)
    settings = from_namespace(AgentSettings, FLAGS, args, mode=args.mode)
    try:
        settings.parsed_defines()
    except ValueError as exc:
        p.error(str(exc))
    if settings.mode == "standalone" and not settings.config:
        p.error("standalone needs --config FILE")
    if settings.mode == "kubernetes" and not settings.node_name:
        p.error("kubernetes needs --node-name or $NODE_NAME")
    return settings


def to_args(settings: AgentSettings) -> list[str]:
    """The command line that parse() turns back into @settings."""
    return [settings.mode, *render(settings, FLAGS)]
