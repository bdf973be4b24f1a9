"""Network-namespace "pods" on a bridge inside a private "node" namespace.

    node netns  (bridge br0 10.240.0.1/24, ip_forward, kube-proxy-like DNAT)
      |-- veth -- pod netns A (eth0 10.240.0.2/24, lo + 127.0.0.6)
      |-- veth -- pod netns B (eth0 10.240.0.3/24)
      ...

The bridge lives in the node namespace, not the host's, so no traffic and no
iptables rule of a lab ever touches the host's network; the host's FORWARD
policy (Docker sets DROP) does not apply either. br_netfilter is switched on
in the node namespace so that a reply bridged straight from one pod to
another is still un-DNATed, as on a kube-proxy node.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.240.0"
GATEWAY = f"{SUBNET}.1"
SERVICE_CIDR = "10.96.0.0/16"


def sh(*cmd: str, check: bool = True, netns: str | None = None, input: str | None = None) -> str:
    full = (["ip", "netns", "exec", netns] if netns else []) + list(cmd)
    res = subprocess.run(full, capture_output=True, text=True, input=input)
    if check and res.returncode != 0:
        raise RuntimeError(f"{shlex.join(full)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


@dataclass
class Pod:
    lab: Lab
    name: str
    netns: str
    ip: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def sh(self, *cmd: str, check: bool = True, input: str | None = None) -> str:
        return sh(*cmd, check=check, netns=self.netns, input=input)

    def spawn(self, cmd: Sequence[str], stdout: int | None = None) -> subprocess.Popen[bytes]:
        """Start a process inside the pod; the lab ends it by PID on close."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *cmd], stdout=stdout, start_new_session=True)
        self.processes.append(proc)
        return proc


class Lab:
    """Creates namespaces on demand; close() removes every trace."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or "ma" + secrets.token_hex(3)
        self.node = f"{self.prefix}-node"
        self.pods: dict[str, Pod] = {}
        self._next_ip = 2
        self._files: list[Path] = []
        self._dirs: list[Path] = []
        self._extra_procs: list[subprocess.Popen[bytes]] = []
        sh("ip", "netns", "add", self.node)
        try:
            sh("ip", "link", "set", "lo", "up", netns=self.node)
            sh("ip", "link", "add", "br0", "type", "bridge", netns=self.node)
            sh("ip", "addr", "add", f"{GATEWAY}/24", "dev", "br0", netns=self.node)
            sh("ip", "link", "set", "br0", "up", netns=self.node)
            for key, value in (
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.all.send_redirects", "0"),
                ("net.ipv4.conf.br0.send_redirects", "0"),
                ("net.bridge.bridge-nf-call-iptables", "1"),
            ):
                sh("sysctl", "-qw", f"{key}={value}", netns=self.node)
        except BaseException:
            self.close()
            raise

    def add_pod(self, name: str, ip: str | None = None) -> Pod:
        """A pod with the next free address, or with @ip (address reuse tests)."""
        ns = f"{self.prefix}-{name}"
        index = self._next_ip
        self._next_ip += 1
        ip = ip or f"{SUBNET}.{index}"
        host_if, pod_if = f"{self.prefix}{index}h", f"{self.prefix}{index}p"
        sh("ip", "netns", "add", ns)
        pod = Pod(self, name, ns, ip)
        self.pods[name] = pod
        sh("ip", "link", "add", host_if, "netns", self.node, "type", "veth", "peer", "name", pod_if, "netns", ns)
        sh("ip", "link", "set", host_if, "master", "br0", "up", netns=self.node)
        pod.sh("ip", "link", "set", pod_if, "name", "eth0")
        pod.sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        pod.sh("ip", "link", "set", "eth0", "up")
        pod.sh("ip", "link", "set", "lo", "up")
        pod.sh("ip", "route", "add", "default", "via", GATEWAY)
        # Istio's inbound hop connects from 127.0.0.6.
        pod.sh("ip", "addr", "add", "127.0.0.6/8", "dev", "lo")
        return pod

    def remove_pod(self, name: str) -> None:
        """Delete a pod: its processes end and its namespace (and veth) go away."""
        pod = self.pods.pop(name)
        for proc in pod.processes:
            stop_process(proc)
        sh("ip", "netns", "del", pod.netns)

    def add_service(self, vip: str, port: int, target: Pod, target_port: int) -> None:
        """A ClusterIP: the DNAT kube-proxy writes, in the node namespace."""
        sh(
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            f"{vip}/32",
            "-p",
            "tcp",
            "--dport",
            str(port),
            "-j",
            "DNAT",
            "--to-destination",
            f"{target.ip}:{target_port}",
            netns=self.node,
        )

    def write_file(self, name: str, text: str) -> Path:
        path = Path("/tmp") / f"{self.prefix}-{name}"
        path.write_text(text)
        self._files.append(path)
        return path

    def track_file(self, path: str) -> None:
        self._files.append(Path(path))

    def track_dir(self, path: str) -> None:
        self._dirs.append(Path(path))

    def track(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self._extra_procs.append(proc)
        return proc

    def close(self) -> None:
        procs = [p for pod in self.pods.values() for p in pod.processes] + self._extra_procs
        for proc in procs:
            stop_process(proc)
        for pod in self.pods.values():
            sh("ip", "netns", "del", pod.netns, check=False)
        sh("ip", "netns", "del", self.node, check=False)
        for path in self._files:
            with contextlib.suppress(OSError):
                path.unlink()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process group we started (by PID), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(predicate: object, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
