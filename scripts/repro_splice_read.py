"""Minimal reproducer: splice() does not see redirected bytes (README, Limitations).

meshaccel_lab.splice on kernel TCP (not enrolled) and accelerated: poll()
says readable in both; splice() moves the 5 bytes on TCP and finds nothing
accelerated, where recv() then reads them.

  .venv/bin/python scripts/repro_splice_read.py     (as root, after make setup)
"""

from __future__ import annotations

import json
import sys

from meshaccel_lab.repro import agent_and_lab
from meshaccel_lab.splice import run

PORT = 8098


def main() -> int:
    with agent_and_lab() as (agent, lab):
        a, b = lab.add_pod("a"), lab.add_pod("b")
        print(f"kernel TCP : {json.dumps(run(a, b, PORT))}", flush=True)
        agent.enrol([a, b])
        print(f"accelerated: {json.dumps(run(a, b, PORT))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
