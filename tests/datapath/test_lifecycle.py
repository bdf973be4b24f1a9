"""Restart, crash loop, upgrade, uninstall and enrolment changes under live,
checked traffic (Cilium's connection-disruption method): long-lived
connections exchange random messages that are echoed and compared byte for
byte while new connections open at a steady rate. Pass: no checker failure,
no gap over 1 s, one attachment of ours afterwards, nothing leaked."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from meshaccel_agent.datapath.attach import our_sockops_on
from meshaccel_agent.datapath.pins import PinRoot
from meshaccel_agent.kernel.host import find_cgroup2
from meshaccel_agent.kernel.layout import Counter
from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.topology import Lab, Pod, wait_for
from tests.datapath.conftest import Delta, serve

ECHO = 8090
PINS = PinRoot("/sys/fs/bpf")


class Checker:
    """The disruption checker running in a pod, in the background."""

    def __init__(self, pod: Pod, host: str, duration: float, long: int = 6, rate: float = 20) -> None:
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                pod.netns,
                sys.executable,
                "-m",
                "meshaccel_lab.traffic",
                "disrupt",
                "--host",
                host,
                "--port",
                str(ECHO),
                "--duration",
                str(duration),
                "--long",
                str(long),
                "--rate",
                str(rate),
                "--stall",
                "1.0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self) -> dict[str, object]:
        import json

        out, err = self.proc.communicate(timeout=120)
        assert out.strip(), err[-2000:]
        return dict(json.loads(out.strip().splitlines()[-1]))


@contextmanager
def pods_with_echo(lab: Lab, agent: AgentProcess) -> Iterator[tuple[Pod, Pod]]:
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "aecho", ECHO)
    agent.enrol([a, b])
    yield a, b


def single_attachment() -> None:
    assert len(our_sockops_on(find_cgroup2())) == 1, "exactly one meshaccel sockops program is attached"


@contextmanager
def adopted_across(agent: AgentProcess) -> Iterator[None]:
    """The agent started inside the block adopted the pinned datapath: the
    same sockops program stays attached, and its log says so."""
    programs = our_sockops_on(find_cgroup2())
    log_offset = len(agent.log_path.read_text())
    yield
    assert our_sockops_on(find_cgroup2()) == programs, "a new program replaced the pinned one"
    assert "datapath adopted" in agent.log_path.read_text()[log_offset:]


def test_sigkill_and_restart_adopts_without_disruption(lab: Lab, agent: AgentProcess) -> None:
    with pods_with_echo(lab, agent) as (a, b):
        checker = Checker(a, b.ip, duration=8)
        time.sleep(2)
        before_kill = agent.metric("meshaccel_sockets_enrolled")
        with adopted_across(agent):
            agent.kill()
            time.sleep(1)  # connections keep flowing with no agent at all
            agent.start()
        assert agent.metric("meshaccel_sockets_enrolled") >= before_kill - 2, "long connections still enrolled"
        delta = Delta(agent)
        result = checker.result()
        assert result["ok"], result
        assert delta["meshaccel_pairs_total"] > 0, "new connections after the restart are accelerated"
        assert delta["meshaccel_redirected_messages_total"] > 0
        single_attachment()


def test_graceful_restart(lab: Lab, agent: AgentProcess) -> None:
    with pods_with_echo(lab, agent) as (a, b):
        checker = Checker(a, b.ip, duration=6)
        time.sleep(1.5)
        before = agent.metric("meshaccel_sockets_enrolled")
        with adopted_across(agent):
            agent.stop()
            agent.start()
        assert agent.metric("meshaccel_sockets_enrolled") >= before - 2, "long connections still enrolled"
        delta = Delta(agent)
        result = checker.result()
        assert result["ok"], result
        assert delta["meshaccel_pairs_total"] > 0, "new connections after the restart are accelerated"
        single_attachment()


def test_crash_loop_during_startup(lab: Lab, agent: AgentProcess) -> None:
    with pods_with_echo(lab, agent) as (a, b):
        checker = Checker(a, b.ip, duration=12)
        agent.kill()
        # Kill the agent at different points of its start-up: while
        # compiling, while pinning, while attaching, while reconciling.
        for delay in (0.05, 0.3, 0.6, 0.9, 1.3):
            agent.spawn()
            time.sleep(delay)
            agent.kill()
        agent.start()
        result = checker.result()
        assert result["ok"], result
        single_attachment()
        assert not list(PINS.path.glob("staging-*"))
        delta = Delta(agent)
        assert _one_accelerated_stream(a, b, agent) and delta["meshaccel_pairs_total"] >= 1


def _one_accelerated_stream(a: Pod, b: Pod, agent: AgentProcess) -> bool:
    res = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            a.netns,
            sys.executable,
            "-m",
            "meshaccel_lab.traffic",
            "aclients",
            "--host",
            b.ip,
            "--port",
            str(ECHO),
            "--conns",
            "2",
            "--rounds",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return res.returncode == 0


def test_upgrade_to_changed_programs_and_maps(lab: Lab, agent: AgentProcess) -> None:
    with pods_with_echo(lab, agent) as (a, b):
        checker = Checker(a, b.ip, duration=10, rate=10)
        time.sleep(2)
        old_sockets = agent.metric("meshaccel_sockets_enrolled")
        assert old_sockets >= 12
        # Version 2: another program build and a resized map, so the pinned
        # generation cannot be adopted and must be replaced.
        agent.stop()
        agent.start("--define", "MA_PROGRAM_VERSION=2", "--pairs-entries", "32768")
        try:
            log = agent.log_path.read_text()
            assert "not reusable" in log and "replacing it" in log
            assert PINS.retired(), "the old generation stays while its connections live"
            delta = Delta(agent)
            result = checker.result()
            assert result["ok"], result
            assert delta["meshaccel_pairs_total"] > 0, "new connections use the new generation"
            single_attachment()
            # Once the long connections closed, the old generation goes.
            wait_for(lambda: not PINS.retired(), 20, "the retired generation to be released")
        finally:
            agent.stop()
            agent.start()  # back to version 1 for the other tests (another upgrade)
        single_attachment()


def test_uninstall_under_traffic_moves_connections_to_tcp(lab: Lab, agent: AgentProcess) -> None:
    """cleanup while checked connections run: each moves to plain TCP
    (nothing redirected left unread), nothing stays pinned or attached, and
    the checker sees no error and no gap."""
    with pods_with_echo(lab, agent) as (a, b):
        checker = Checker(a, b.ip, duration=8)
        time.sleep(2)
        agent.stop()
        try:
            done = agent.cleanup(wait=10)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "moved" in done.stdout and not PINS.path.exists(), done.stdout
            assert our_sockops_on(find_cgroup2()) == []
            result = checker.result()
            assert result["ok"], result
            assert int(str(result["long_rounds"])) > 100, "the long-lived connections kept exchanging after the move"
        finally:
            agent.start()


def test_uninstall_moves_a_running_bulk_stream_to_tcp_intact(lab: Lab, agent: AgentProcess) -> None:
    """A stream that is never idle moves to TCP within seconds, and the sink's
    hash of all 16 GiB matches. (Draining also closes a window of a few
    hundred nanoseconds, between a sender's verdict and its redirect, in
    which a socket taken out of the sockhash would fail that send with
    EPIPE; this test does not hit that window without draining either.)"""
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "sink", 8092)
    agent.enrol([a, b])
    stream = subprocess.Popen(
        ["ip", "netns", "exec", a.netns, sys.executable, "-m", "meshaccel_lab.traffic", "stream", "--host", b.ip,
         "--port", "8092", "--bytes", str(16 << 30), "--chunk", str(1 << 20)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)
    agent.stop()
    try:
        assert stream.poll() is None, "the stream ended before the uninstall"
        t0 = time.monotonic()
        done = agent.cleanup(wait=20)
        took = time.monotonic() - t0
        assert done.returncode == 0, done.stdout + done.stderr
        assert stream.poll() is None, "the stream should still be running on TCP"
        out, _ = stream.communicate(timeout=300)
        assert '"ok": true' in out, out
        assert took < 10, f"moving a busy stream to TCP took {took:.1f} s"
    finally:
        if stream.poll() is None:
            stream.kill()
        agent.start()


def test_uninstall_waits_for_a_reader_that_has_not_read(lab: Lab, agent: AgentProcess) -> None:
    """A reader sleeping on 2 MiB that were redirected to it: its socket
    cannot leave the sockhash without losing them, so cleanup keeps that
    generation (exit 3) until the reader has read; then every byte arrived."""
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "sink", 8091, "--first-read-delay", "6")
    agent.enrol([a, b])
    stream = subprocess.Popen(
        ["ip", "netns", "exec", a.netns, sys.executable, "-m", "meshaccel_lab.traffic", "stream", "--host", b.ip,
         "--port", "8091", "--bytes", str(2 << 20), "--chunk", "65536"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2)  # written, redirected, not read
    agent.stop()
    try:
        early = agent.cleanup(wait=0)
        assert early.returncode == 3, early.stdout + early.stderr
        assert PINS.current() is not None, "the generation with unread bytes stays pinned"
        later = agent.cleanup(wait=15)  # the reader wakes after 6 s and reads
        assert later.returncode == 0, later.stdout + later.stderr
        out, _ = stream.communicate(timeout=30)
        assert '"ok": true' in out, out
        assert not PINS.path.exists()
    finally:
        if stream.poll() is None:
            stream.kill()
        agent.start()


def test_endpoint_removed_while_connections_live(lab: Lab, agent: AgentProcess) -> None:
    with pods_with_echo(lab, agent) as (a, b):
        checker = Checker(a, b.ip, duration=7)
        time.sleep(2)
        agent.unenrol([b])
        time.sleep(0.5)
        delta = Delta(agent)
        time.sleep(2)
        assert delta["meshaccel_pairs_total"] == 0, "no new pair once b is not enrolled"
        assert delta["meshaccel_redirected_messages_total"] > 0, "live pairs keep their redirect"
        result = checker.result()
        assert result["ok"], result


def test_ip_reused_by_new_netns_while_agent_down(lab: Lab, agent: AgentProcess) -> None:
    a, b = lab.add_pod("a"), lab.add_pod("b")
    agent.enrol([a, b])
    agent.stop()
    try:
        # b dies and a new pod gets its address while nobody updates the maps.
        lab.remove_pod("b")
        b2 = lab.add_pod("b2", ip=b.ip)
        serve(b2, "aecho", ECHO)
        serve(a, "aecho", ECHO)
        pairs = sum(g.counters()[Counter.PAIRS] for g in PINS.generations())
        for client, server in ((a, b2), (b2, a)):
            result = Checker(client, server.ip, duration=3, long=4, rate=10).result()
            assert result["ok"], result
        assert sum(g.counters()[Counter.PAIRS] for g in PINS.generations()) == pairs, "a stale entry never pairs"
    finally:
        agent.unenrol([b], wait=False)
        agent.start()
    agent.enrol([b2])
    delta = Delta(agent)
    assert Checker(a, b2.ip, duration=2, long=2, rate=5).result()["ok"]
    assert delta["meshaccel_pairs_total"] > 0, "the new pod is accelerated once enrolled"
