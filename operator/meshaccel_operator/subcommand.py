"""The operator's one-shot subcommands (`uninstall`, `check`): one
namespace, one timeout, a yes/no answer as the exit code."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence

from kubernetes import client


def run(action: Callable[[client.ApiClient, str, float], bool], prog: str, doc: str, argv: Sequence[str] | None) -> int:
    from meshaccel_api.kube import api_client

    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "meshaccel-system"))
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each step")
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return 0 if action(api_client(), args.namespace, args.timeout) else 1
