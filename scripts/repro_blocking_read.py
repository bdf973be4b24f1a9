"""Minimal reproducer: a blocking recv() woken without data (README, Limitations).

Each case of meshaccel_lab.blocking (a signal, a second thread writing on the
same socket, the same once flow control spilled its direction) on kernel TCP
(not enrolled) and accelerated, with a 256 KiB flow bound; prints what the
blocked recv() returned and when.

  .venv/bin/python scripts/repro_blocking_read.py     (as root, after make setup)
"""

from __future__ import annotations

import json
import sys

from meshaccel_lab.blocking import CASES, run
from meshaccel_lab.repro import agent_and_lab

BOUND = 256 << 10
PORT = 8096


def main() -> int:
    with agent_and_lab("--flow-bound-bytes", str(BOUND)) as (agent, lab):
        for n, case in enumerate(CASES):
            for enrolled in (False, True):
                a, b = lab.add_pod(f"a{n}{int(enrolled)}"), lab.add_pod(f"b{n}{int(enrolled)}")
                if enrolled:
                    agent.enrol([a, b])
                r = run(a, b, case, PORT)
                print(f"{case:14s} {'accelerated' if enrolled else 'kernel TCP '}: {json.dumps(r)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
