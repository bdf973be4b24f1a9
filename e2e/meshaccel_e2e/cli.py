"""e2e/up, e2e/down, e2e/load-images (README "Tests", the e2e tier)."""

from __future__ import annotations

import argparse
import os
import sys

from meshaccel_e2e import cluster, kind
from meshaccel_e2e.images import load_local
from meshaccel_e2e.layout import ADMIN_KUBECONFIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e", description="the e2e tier's cluster")
    parser.add_argument("command", choices=("up", "down", "load-images", "kubeconfig"))
    parser.add_argument("--kind", action="store_true", help="a kind cluster (workstations with Docker)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and not args.kind:
        print("e2e: the local cluster runs host processes: run as root", file=sys.stderr)
        return 2
    if args.command == "kubeconfig":
        print(kind.KUBECONFIG if args.kind else ADMIN_KUBECONFIG)
    elif args.kind:
        {"up": kind.up, "down": kind.down, "load-images": kind.load_images}[args.command]()
    elif args.command == "up":
        cluster.up()
    elif args.command == "down":
        return 1 if cluster.down() else 0
    else:
        for image in load_local():
            print(f"e2e: loaded {image.reference} ({image.size_bytes / 2**20:.0f} MiB)")
    return 0
