"""`meshaccel status --local`, `top --local` and `doctor` on this host,
against the real standalone agent and its pinned datapath; `top` runs in a
real terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.topology import Lab, wait_for
from tests.datapath.conftest import ECHO_PORT, serve

MESHACCEL = os.path.join(os.path.dirname(sys.executable), "meshaccel")


def meshaccel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESHACCEL, *args], capture_output=True, text=True, timeout=120)


def test_local_status_reads_the_pinned_datapath(agent: AgentProcess) -> None:
    res = meshaccel("status", "--local", "-o", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    (node,) = json.loads(res.stdout)["nodes"]
    assert node["attached"] is True and node["node"] == os.uname().nodename
    assert agent.metric("meshaccel_redirected_bytes_total") <= node["bytes_redirected"]
    table = meshaccel("status", "--local").stdout
    assert "OK: acceleration works" in table and os.uname().nodename in table


def test_local_status_fails_naming_what_is_wrong(agent: AgentProcess) -> None:
    with tempfile.TemporaryDirectory() as not_bpffs:
        res = meshaccel("status", "--local", "--bpffs", not_bpffs)
    assert res.returncode == 1 and f"{not_bpffs} is not a bpf filesystem" in res.stdout, res.stdout


def test_doctor_passes_here_with_the_agents_self_test(agent: AgentProcess) -> None:
    res = meshaccel("doctor", "--agent", agent.url + "/metrics")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[ok  ] kernel self-test: the agent's checks pass" in res.stdout, res.stdout
    assert "[ok  ] capabilities" in res.stdout and "acceleration can work on this node" in res.stdout


def test_doctor_fails_without_a_bpffs(agent: AgentProcess) -> None:
    with tempfile.TemporaryDirectory() as nowhere:
        res = meshaccel("doctor", "--bpffs", nowhere, "--agent", agent.url + "/metrics")
    assert res.returncode == 1 and "[FAIL] bpffs" in res.stdout and "fix: mount -t bpf" in res.stdout, res.stdout


def test_the_agent_answers_its_doctor_checks_as_json(agent: AgentProcess) -> None:
    """GET /doctor: what `meshaccel doctor --cluster` asks each agent for
    through the API server, with the self-test the agent itself ran."""
    with urllib.request.urlopen(agent.url + "/doctor", timeout=30) as r:
        answer = json.loads(r.read())
    assert answer["canAccelerate"] is True and answer["node"] == os.uname().nodename
    checks = {f["check"]: f for f in answer["findings"]}
    assert checks["kernel self-test"]["ok"] and checks["bpffs"]["ok"] and checks["capabilities"]["ok"], checks


class Tmux:
    """A private tmux server (its own socket), ended by its own kill-server."""

    def __init__(self, command: str, width: int = 150, height: int = 45) -> None:
        self.socket = f"meshaccel-test-{os.getpid()}-{time.monotonic_ns()}"
        self.tmux(["new-session", "-d", "-x", str(width), "-y", str(height), command])

    def tmux(self, args: list[str]) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=10).stdout  # fmt: skip

    def screen(self) -> str:
        return self.tmux(["capture-pane", "-p"])

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def test_top_shows_live_rates_per_node_and_endpoint_in_a_real_terminal(agent: AgentProcess, lab: Lab) -> None:
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "echo", ECHO_PORT)
    agent.enrol([a, b])
    # Four long connections exchanging checked echoes for 20 s (bounded).
    checked = ["disrupt", "--host", b.ip, "--port", str(ECHO_PORT), "--duration", "20", "--long", "4", "--rate", "1"]
    load = a.spawn([sys.executable, "-m", "meshaccel_lab.traffic", *checked], stdout=subprocess.DEVNULL)
    term = Tmux(f"{MESHACCEL} top --local --interval 1 --count 6; echo TOP-EXIT=$?; sleep 60")
    try:
        endpoint = re.compile(rf"{re.escape(b.ip)}:{ECHO_PORT}\s+(\d+)\s+([\d.]+) ([kMG]?)bit/s")
        node = re.compile(rf"{re.escape(os.uname().nodename)}\s+\d+\s+([\d.]+) ([kMG])bit/s")
        # A frame with the node's and the endpoint's rates, within 30 s.
        deadline = time.monotonic() + 30
        while not (endpoint.search(frame := term.screen()) and node.search(frame)) and time.monotonic() < deadline:
            time.sleep(0.2)
        m = endpoint.search(frame)
        assert m and node.search(frame), frame
        assert int(m.group(1)) >= 4 and float(m.group(2)) > 0, frame
        wait_for(lambda: "TOP-EXIT=" in term.screen(), 30, "`meshaccel top --count 6` to end")
        final = term.screen()
        assert "TOP-EXIT=0" in final, final
        # Redrawn in place: one title on the screen after six frames.
        assert final.count("meshaccel top: every 1s") == 1, final
    finally:
        term.close()
        load.wait(timeout=60)
    assert load.returncode == 0


def test_top_refuses_what_it_cannot_show(agent: AgentProcess) -> None:
    res = meshaccel("top", "--interval", "0.1")
    assert res.returncode == 2 and "shorter than the shortest refresh, 0.5s" in res.stderr, res.stderr
    with tempfile.TemporaryDirectory() as nowhere:
        res = meshaccel("top", "--local", "--bpffs", nowhere, "--count", "1", "--interval", "0.5")
    assert res.returncode == 0 and f"no datapath pinned under {nowhere}/meshaccel" in res.stdout, res.stdout
