"""`meshaccel COMMAND ...` (also `kubectl meshaccel COMMAND ...`): the node
agent, the operator, and the views an operator of the product uses.

    meshaccel status [--local] [-o table|json|yaml]   is it on, is it working, why not
    meshaccel top [--local] [--interval S]            live redirect rates per node (and endpoint)
    meshaccel doctor [--cluster]                      can it work on this node (every node), what to fix
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _prog() -> str:
    # kubectl runs plugins as kubectl-NAME; say what the user typed.
    return "kubectl meshaccel" if os.path.basename(sys.argv[0]).startswith("kubectl-") else "meshaccel"


def status_main(args: argparse.Namespace) -> int:
    from meshaccel import status

    if args.local:
        result = status.gather_local(args.bpffs, args.cgroup)
    else:
        from meshaccel_api.kube import api_client

        result = status.gather(api_client(args.kubeconfig))
    print(status.output(result, args.output))
    return 0 if result.ok else 1


def doctor_main(args: argparse.Namespace) -> int:
    from meshaccel import doctor

    if args.cluster:
        from meshaccel_api.kube import api_client

        text, ok = doctor.cluster(api_client(args.kubeconfig))
    else:
        text, ok = doctor.local(args.bpffs, args.agent, args.cgroup)
    print(text)
    return 0 if ok else 1


def top_main(args: argparse.Namespace) -> int:
    from meshaccel import top

    if args.local:
        source = top.local_frames(args.bpffs)
    else:
        from meshaccel_api.kube import api_client

        source = top.cluster_frames(api_client(args.kubeconfig))
    top.run(source, args.interval, args.count)
    return 0


def _interval(text: str) -> float:
    from meshaccel.top import MIN_INTERVAL

    value = float(text)
    if value < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(f"{value:g}s is shorter than the shortest refresh, {MIN_INTERVAL:g}s")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = _prog()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("agent", help="run the node agent (see `meshaccel agent --help`)", add_help=False)
    sub.add_parser("operator", help="run the operator (see `meshaccel operator --help`)", add_help=False)
    status = sub.add_parser("status", help="is acceleration on and working (cluster-wide, or --local)")
    status.add_argument("--local", action="store_true", help="this node, from its pins and maps (no API server)")
    status.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    status.add_argument("--kubeconfig", help="default: in a pod its service account, else $KUBECONFIG")
    status.add_argument("--bpffs", default="/sys/fs/bpf", help="--local: the node's bpf filesystem")
    status.add_argument("--cgroup", help="--local: the cgroup2 root (default: from /proc/mounts)")
    top = sub.add_parser("top", help="live redirect rates per node (cluster-wide, or --local with endpoints)")
    top.add_argument("--local", action="store_true", help="this node, from its pins and maps, with its endpoints")
    top.add_argument("--interval", type=_interval, default=2.0, help="seconds between frames (at least 0.5)")
    top.add_argument("--count", type=int, default=0, help="stop after this many frames (default: until Ctrl-C)")
    top.add_argument("--kubeconfig", help="default: in a pod its service account, else $KUBECONFIG")
    top.add_argument("--bpffs", default="/sys/fs/bpf", help="--local: the node's bpf filesystem")
    doctor = sub.add_parser("doctor", help="can acceleration work on this node (or every node), and what to fix")
    doctor.add_argument("--cluster", action="store_true", help="ask every node's agent through the API server")
    doctor.add_argument("--kubeconfig", help="--cluster: default in a pod its service account, else $KUBECONFIG")
    doctor.add_argument("--bpffs", default="/sys/fs/bpf")
    doctor.add_argument(
        "--agent", default="http://127.0.0.1:9464/metrics", help="the local agent's /metrics (or its address)"
    )
    doctor.add_argument("--cgroup", default="", help="the agent's cgroup2 root (in the agent pod: /host/sys/fs/cgroup)")
    if argv and argv[0] == "agent":
        from meshaccel_agent.main import main as agent_main

        return agent_main(argv[1:], prog=f"{prog} agent")
    if argv and argv[0] == "operator":
        from meshaccel_operator.main import main as operator_main

        return operator_main(argv[1:], prog=f"{prog} operator")
    args = parser.parse_args(argv)
    if args.command == "status":
        return status_main(args)
    if args.command == "doctor":
        return doctor_main(args)
    if args.command == "top":
        return top_main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
