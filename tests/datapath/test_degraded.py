"""Unsafe or impossible hosts: the agent stays up, says why, enrols nothing,
and traffic flows natively. Map pressure: new connections go native."""

from __future__ import annotations

import os

from meshaccel_agent.datapath.attach import our_sockops_on
from meshaccel_agent.kernel.host import find_cgroup2
from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.topology import Lab, wait_for
from tests.datapath.conftest import Delta, agent_with, probe, serve, traffic


def test_failed_selftest_degrades_and_enrols_nothing(lab: Lab, agent: AgentProcess) -> None:
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "sink", 8080)
    agent.enrol([a, b], wait=False)
    with agent_with(agent, "--define", "MA_FAULT_NO_REDIRECT=1", wait_ready=False):
        wait_for(lambda: "degraded" in probe(agent, "/readyz")[1], 60, "the self-test verdict")
        code, body = probe(agent, "/readyz")
        assert code == 503 and "SelfTestFailed" in body and "redirect" in body, body
        assert probe(agent, "/healthz")[0] == 200
        metrics = agent.metrics()
        assert metrics["meshaccel_degraded{reason=SelfTestFailed}"] == 1
        assert metrics["meshaccel_selftest_passed{check=redirect}"] == 0
        assert metrics["meshaccel_datapath_attached"] == 0
        assert our_sockops_on(find_cgroup2()) == []
        assert traffic(a, "stream", "--host", b.ip, "--port", "8080", "--bytes", str(8 << 20))["ok"]


def test_ignore_selftest_override_is_loud(lab: Lab, agent: AgentProcess) -> None:
    with agent_with(agent, "--define", "MA_FAULT_NO_REDIRECT=1", "--ignore-selftest"):
        assert agent.metric("meshaccel_selftest_overridden") == 1
        assert agent.metric("meshaccel_datapath_attached") == 1
        assert "ACCELERATING ANYWAY" in agent.log_path.read_text()


def test_no_cgroup2_degrades(agent: AgentProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with agent_with(agent, "--cgroup", str(tmp_path), wait_ready=False):
        wait_for(lambda: "degraded" in probe(agent, "/readyz")[1], 30, "the degraded verdict")
        assert "NoCgroup2" in probe(agent, "/readyz")[1]
        assert agent.metric("meshaccel_degraded{reason=NoCgroup2}") == 1
        assert probe(agent, "/healthz")[0] == 200


def test_full_sockhash_sends_new_connections_native(lab: Lab, agent: AgentProcess) -> None:
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "aecho", 8090)
    agent.enrol([a, b], wait=False)
    with agent_with(agent, "--sockhash-entries", "8"):
        wait_for(lambda: agent.metric("meshaccel_netns_enrolled") == 2, 15, "enrolment")
        delta = Delta(agent)
        result = traffic(a, "aclients", "--host", b.ip, "--port", "8090", "--conns", "30", "--rounds", "30")
        assert result["ok"], result
        assert delta["meshaccel_insert_refusals_total{reason=sockhash_full}"] > 0
        assert 0 < delta["meshaccel_pairs_total"] < 30, "only what fits in the map was paired"
        assert agent.metric("meshaccel_sockets_enrolled") == 0


def test_full_enrolment_map_leaves_extra_pods_native(lab: Lab, agent: AgentProcess) -> None:
    pods = [lab.add_pod(f"p{i}") for i in range(4)]
    serve(pods[1], "sink", 8080)
    serve(pods[3], "sink", 8080)
    with agent_with(agent, "--netns-entries", "2"):
        agent.enrol(pods, wait=False)
        wait_for(lambda: agent.metric("meshaccel_netns_refused") == 2, 15, "two endpoints refused")
        assert agent.metric("meshaccel_netns_enrolled") == 2
        assert probe(agent, "/readyz")[0] == 200
        # p0 and p1 fit (first in the file); p2 and p3 stay native.
        delta = Delta(agent)
        assert traffic(pods[0], "stream", "--host", pods[3].ip, "--port", "8080", "--bytes", str(4 << 20))["ok"]
        assert delta["meshaccel_pairs_total"] == 0
        assert traffic(pods[0], "stream", "--host", pods[1].ip, "--port", "8080", "--bytes", str(4 << 20))["ok"]
        assert delta["meshaccel_pairs_total"] == 1
    agent.unenrol(pods, wait=True)


def test_healthz_fails_only_when_the_main_loop_is_stuck(agent: AgentProcess) -> None:
    """A config path that blocks on read (a FIFO with no writer, like a hung
    network filesystem) wedges the reconcile loop; the HTTP thread keeps
    answering, and /healthz turns 503 once the loop made no progress."""
    good = agent.config_path.read_text()
    with agent_with(agent, "--liveness-timeout", "3"):
        assert probe(agent, "/healthz")[0] == 200
        agent.config_path.unlink()
        os.mkfifo(agent.config_path)
        try:
            wait_for(lambda: probe(agent, "/healthz")[0] == 503, 20, "/healthz to report the stuck loop")
            assert "stalled" in probe(agent, "/healthz")[1]
        finally:
            # Unblock the reader, then restore the file for the next tests.
            with open(agent.config_path, "w") as fifo:
                fifo.write(good)
            agent.config_path.unlink()
            agent.config_path.write_text(good)
