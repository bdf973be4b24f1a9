"""`meshaccel status --local` and `meshaccel doctor` on this host, against
the real standalone agent and its pinned datapath."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from meshaccel_lab.agent import AgentProcess

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
