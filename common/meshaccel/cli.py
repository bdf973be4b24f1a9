"""`meshaccel` command line: the node agent and the host demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from meshaccel.constants import DEFAULT_BPFFS, DEFAULT_CACHE_DIR, DEFAULT_METRICS_ADDRESS


def _agent_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("agent", help="run the node agent")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--standalone", action="store_true", help="enrolment from --config, no Kubernetes")
    mode.add_argument("--cleanup", action="store_true", help="uninstall: detach and unpin everything")
    mode.add_argument("--kubernetes", action="store_true", help="enrolment from this node's NodeEnrolment")
    p.add_argument("--config", help="enrolment file (standalone mode)")
    p.add_argument("--metrics-address", default=DEFAULT_METRICS_ADDRESS, help="HOST:PORT for /metrics and probes")
    p.add_argument("--cgroup", help="cgroup2 directory for sockops (default: the cgroup2 mount from /proc/mounts)")
    p.add_argument("--bpffs", default=DEFAULT_BPFFS, help="bpf filesystem mount point")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="where fallback kernel headers are merged")
    p.add_argument("--sockhash-entries", type=int, default=65536, help="max accelerated sockets")
    p.add_argument("--pairs-entries", type=int, default=65536, help="max handshakes tracked at once")
    p.add_argument("--netns-entries", type=int, default=4096, help="max enrolled network namespaces")
    p.add_argument("--endpoint-entries", type=int, default=16384, help="max enrolled IPv4 addresses")
    p.add_argument(
        "--define",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="extra compile-time define for the BPF programs (development and upgrade tests)",
    )
    p.add_argument(
        "--ignore-selftest",
        action="store_true",
        help="accelerate even if the kernel self-test fails (loud; for operators who know better)",
    )
    p.add_argument(
        "--liveness-timeout",
        type=float,
        default=60.0,
        help="/healthz fails when the main loop has not made progress for this many seconds",
    )
    k8s = p.add_argument_group("Kubernetes mode")
    k8s.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""), help="this node (default: $NODE_NAME)")
    k8s.add_argument(
        "--namespace", default=os.environ.get("POD_NAMESPACE", "meshaccel-system"), help="the agent's namespace"
    )
    k8s.add_argument("--daemonset", default="meshaccel-agent", help="own DaemonSet: gone at shutdown = uninstall")
    k8s.add_argument("--kubeconfig", help="default: in-cluster service account, else $KUBECONFIG")
    k8s.add_argument("--pod-cgroup-root", default="/sys/fs/cgroup", help="where the kubelet's kubepods cgroups live")
    k8s.add_argument("--status-interval", type=float, default=10.0, help="max one counters-only status write per")
    p.add_argument("--wait", type=float, default=10.0, help="cleanup: seconds to wait for live connections")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _run_agent(args: argparse.Namespace) -> int:
    from meshaccel.agent.compile import BuildOptions, MapSizes
    from meshaccel.agent.datapath import Datapath, cleanup
    from meshaccel.agent.host import ensure_bpffs, find_cgroup2

    if args.cleanup:
        cgroup = args.cgroup or find_cgroup2()
        report = cleanup(args.bpffs, cgroup, args.wait)
        if report.nothing_installed:
            print("meshaccel: nothing installed, nothing to clean up")
            return 0
        if report.live_sockets:
            print(
                f"meshaccel: detached; {report.live_sockets} accelerated socket(s) still open, "
                "their maps stay pinned until they close: run --cleanup again later"
            )
            return 3
        print(f"meshaccel: detached {report.detached} program(s), unpinned {report.unpinned} generation(s)")
        return 0

    if args.standalone and not args.config:
        print("meshaccel: --standalone needs --config FILE", file=sys.stderr)
        return 2
    if args.kubernetes and not args.node_name:
        print("meshaccel: --kubernetes needs --node-name or $NODE_NAME", file=sys.stderr)
        return 2

    try:
        cgroup = args.cgroup or find_cgroup2()
    except RuntimeError:
        cgroup = "/nonexistent-cgroup2"  # the agent starts degraded (NoCgroup2) and says why
    ensure_bpffs(args.bpffs)
    sizes = MapSizes(
        sockhash_entries=args.sockhash_entries,
        pairs_entries=args.pairs_entries,
        netns_entries=args.netns_entries,
        endpoint_entries=args.endpoint_entries,
    )
    try:
        defines = tuple((name, int(value)) for name, _, value in (d.partition("=") for d in args.define))
    except ValueError:
        print(f"meshaccel: --define takes NAME=INT, got {args.define}", file=sys.stderr)
        return 2
    datapath = Datapath(args.bpffs, cgroup, args.cache_dir, BuildOptions(sizes=sizes, extra_defines=defines))
    if args.kubernetes:
        from pathlib import Path

        from meshaccel.agent.kubernetes import KubernetesAgent
        from meshaccel.kubeclient import api_client

        KubernetesAgent(
            datapath,
            api_client(args.kubeconfig),
            args.node_name,
            args.namespace,
            args.daemonset,
            args.metrics_address,
            Path(args.pod_cgroup_root),
            status_interval=args.status_interval,
            ignore_selftest=args.ignore_selftest,
            liveness_timeout=args.liveness_timeout,
        ).run()
        return 0
    from meshaccel.agent.standalone import StandaloneAgent

    StandaloneAgent(
        datapath,
        args.config,
        args.metrics_address,
        ignore_selftest=args.ignore_selftest,
        liveness_timeout=args.liveness_timeout,
    ).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshaccel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _agent_parser(sub)
    op = sub.add_parser("operator", help="run the operator (kopf) against $KUBECONFIG or in-cluster")
    op.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "meshaccel-system"))
    op.add_argument("--metrics-address", default="0.0.0.0:9465", help="HOST:PORT for /metrics")
    op.add_argument("--liveness-address", default="0.0.0.0:8080", help="HOST:PORT for kopf's /healthz")
    op.add_argument("--status-interval", type=float, default=10.0, help="seconds between policy status updates")
    op.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    demo = sub.add_parser("demo", help="host demo: pods in network namespaces, with and without acceleration")
    demo.add_argument("--seconds", type=int, default=2, help="sockperf run time per measurement")
    demo.add_argument("--rounds", type=int, default=3, help="interleaved rounds of kernel TCP and meshaccel")
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", "info")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "agent":
        return _run_agent(args)
    if args.command == "operator":
        from meshaccel.operator.main import run

        return run(args.namespace, args.metrics_address, args.liveness_address, args.status_interval)
    from meshaccel.lab.demo import run_demo

    return run_demo(args.seconds, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
