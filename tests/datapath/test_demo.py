"""The README's first command: the demo runs end to end and leaves nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys

from meshaccel_agent.datapath.pins import PinRoot
from meshaccel_lab.agent import AgentProcess


def test_demo_prints_both_paths_and_counters(agent: AgentProcess) -> None:
    agent.stop()  # the demo runs an agent of its own
    try:
        res = subprocess.run(
            [sys.executable, "-m", "meshaccel_lab.demo", "--seconds", "1", "--rounds", "1"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        out = res.stdout
        for path in ("pod a -> pod b (direct)", "pod c -> sidecar c -> pod b"):
            row = next(line for line in out.splitlines() if line.startswith(path))
            numbers = [float(x) for x in re.findall(r"\d+\.\d+", row)]
            assert len(numbers) == 6 and all(n > 0 for n in numbers), row
        paired = re.search(r"connections paired\s+(\d+)", out)
        assert paired and int(paired.group(1)) >= 3, out  # a->b, c->sidecar, sidecar->b
        assert not PinRoot("/sys/fs/bpf").path.exists()
        assert not [
            ns
            for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
            if ns.startswith("ma") and ns.endswith("-c")
        ]
    finally:
        agent.start()
