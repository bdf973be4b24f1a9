"""An accelerated socket behaves like TCP towards a slow reader: the writer
waits (blocking sockets block, non-blocking ones get EAGAIN and EPOLLOUT
later), memory stays bounded, no error plain TCP would not give, every byte
arrives in order. Each run is repeated not enrolled, on kernel TCP, as the
reference for memory.

The agent runs with a small bound (256 KiB) so that the limit trips
mid-stream, many times, while data is in flight on both paths."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from meshaccel_api.v1alpha1 import FlowControl
from meshaccel_lab import blocking
from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.blocking import CASES
from meshaccel_lab.sockmem import Sampler
from meshaccel_lab.topology import Lab, Pod, wait_for
from tests.datapath.conftest import SHAPES, Delta, Shape, agent_with, build_shape

MiB = 1 << 20
BOUND = 256 << 10
CHUNK = 1 << 20  # the writers' write size: the bound may be passed by one
SLOW_PORT = 8090
BLOCKING_PORT = 8097


@pytest.fixture
def small_bound(agent: AgentProcess) -> Iterator[AgentProcess]:
    with agent_with(agent, "--flow-bound-bytes", str(BOUND)):
        yield agent


def slow(pod: Pod, *args: str, timeout: float = 300) -> dict[str, object]:
    res = subprocess.run(
        ["ip", "netns", "exec", pod.netns, sys.executable, "-m", "meshaccel_lab.slow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = res.stdout.strip().splitlines()
    assert lines, f"client printed nothing (rc={res.returncode}): {res.stderr[-2000:]}"
    return dict(json.loads(lines[-1]))


def slow_sink(pod: Pod, port: int, *args: str) -> None:
    pod.spawn([sys.executable, "-m", "meshaccel_lab.slow", "slowsink", "--port", str(port), *args])
    wait_for(lambda: f":{port} " in pod.sh("ss", "-Hltn"), what=f"slow sink on {pod.name}:{port}")


def slow_shape(name: str, lab: Lab, agent: AgentProcess, *sink_args: str) -> tuple[Shape, str, int]:
    """A shape whose server pod also runs a slow sink; (shape, host, port)."""
    shape = build_shape(name, lab, agent)
    slow_sink(shape.server, SLOW_PORT, *sink_args)
    if name == "clusterip":
        lab.add_service("10.96.0.11", 80, shape.server, SLOW_PORT)
        return shape, "10.96.0.11", 80
    return shape, shape.host, SLOW_PORT


def measured(agent: AgentProcess, shape: Shape, *client_args: str) -> tuple[dict[str, object], Sampler, Delta]:
    delta = Delta(agent)
    with Sampler([shape.client, shape.server]) as sampler:
        result = slow(shape.client, *client_args)
    return result, sampler, delta


def within(accel: Sampler, kernel: Sampler, connections: int) -> bool:
    """No socket's receive side held more than TCP's own receive buffer plus
    the bound and one write (TCP alone keeps it within the buffer: the
    kernel run shows it); the host's TCP memory is reported alongside."""
    ok = accel.peak.over_rcvbuf <= BOUND + CHUNK and kernel.peak.over_rcvbuf <= 64 << 10
    print(
        f"{connections} connection(s): beyond rcvbuf accelerated {accel.peak.over_rcvbuf} B, kernel "
        f"{kernel.peak.over_rcvbuf} B; host TCP memory grew {accel.peak.host_tcp_bytes >> 10} KiB accelerated, "
        f"{kernel.peak.host_tcp_bytes >> 10} KiB kernel"
    )
    return ok


READER_STYLES = {
    "direct": "blocking",
    "clusterip": "epoll",
    "sidecar_outbound": "peek",
    "sidecar_inbound": "epoll",
    "sidecar_to_sidecar": "blocking",
}


@pytest.mark.parametrize("shape_name", SHAPES)
def test_slow_reader_bounds_memory_and_makes_the_writer_wait(
    shape_name: str, lab: Lab, small_bound: AgentProcess
) -> None:
    """Reader at 8 MiB/s, random read sizes and sleeps; a non-blocking
    writer floods 40 MiB. Against kernel TCP first, then accelerated."""
    style = READER_STYLES[shape_name]
    shape, host, port = slow_shape(shape_name, lab, small_bound, "--rate", str(8 * MiB), "--style", style)
    flood = ("flood", "--host", host, "--port", str(port), "--bytes", str(40 * MiB), "--chunk", str(CHUNK))

    small_bound.unenrol([shape.client, shape.server])
    kernel, kernel_mem, _ = measured(small_bound, shape, *flood)
    assert kernel["ok"] and int(str(kernel["eagain"])) > 0, kernel

    small_bound.enrol([shape.client, shape.server])
    accel, accel_mem, delta = measured(small_bound, shape, *flood)
    assert accel["ok"], accel  # every byte, in order; no ENOMEM, EPIPE or any error
    assert int(str(accel["eagain"])) > 0, "the writer never had to wait"
    assert delta["meshaccel_pairs_total"] >= shape.hops
    assert delta["meshaccel_flow_control_switches_total{to=stack}"] >= shape.hops, "the bound never tripped"
    assert within(accel_mem, kernel_mem, shape.hops)


def test_fifty_slow_connections_at_once(lab: Lab, small_bound: AgentProcess) -> None:
    shape, host, port = slow_shape("direct", lab, small_bound, "--rate", str(2 * MiB), "--style", "epoll")
    flood = ("flood", "--host", host, "--port", str(port), "--bytes", str(6 * MiB), "--parallel", "50")
    small_bound.unenrol([shape.client, shape.server])
    kernel, kernel_mem, _ = measured(small_bound, shape, *flood)
    assert kernel["ok"], kernel
    small_bound.enrol([shape.client, shape.server])
    accel, accel_mem, delta = measured(small_bound, shape, *flood)
    assert accel["ok"], accel
    assert delta["meshaccel_pairs_total"] >= 50
    assert delta["meshaccel_flow_control_switches_total{to=stack}"] >= 50
    assert within(accel_mem, kernel_mem, 50)


def test_blocking_writer_blocks_instead_of_queueing(lab: Lab, small_bound: AgentProcess) -> None:
    """A blocking sendall() to a slow reader: bounded memory means the call
    waited; it completes, and the reply after shutdown(SHUT_WR) arrives."""
    shape, host, port = slow_shape("sidecar_to_sidecar", lab, small_bound, "--rate", str(8 * MiB))
    blocking = ("halfclose", "--host", host, "--port", str(port), "--bytes", str(32 * MiB))
    small_bound.unenrol([shape.client, shape.server])
    _, kernel_mem, _ = measured(small_bound, shape, *blocking)
    small_bound.enrol([shape.client, shape.server])
    result, accel_mem, delta = measured(small_bound, shape, *blocking)
    assert result["ok"], result
    assert delta["meshaccel_flow_control_switches_total{to=stack}"] >= 1
    assert within(accel_mem, kernel_mem, shape.hops)


def test_switches_back_once_the_reader_catches_up(lab: Lab, agent: AgentProcess) -> None:
    """Slow for 16 MiB, then a lull until the reader has read every byte,
    then as fast as it can (the default bound, larger than a write): the
    direction spills to the stack and returns to redirect at the first write
    after the lull; from there at least a bound's worth is redirected before
    it could spill again, still byte-exact.

    The lull makes the return deterministic. A writer that never pauses
    returns only once the reader happens to read the last stack byte before
    the writer's next write (lib/flow.h: redirecting earlier would let the
    new bytes overtake the stack's); the benchmark's slow-reader phase
    reports the writer's throughput after the reader sped up, against TCP."""
    fast_after = 16 * MiB
    shape, host, port = slow_shape(
        "direct", lab, agent, "--rate", str(8 * MiB), "--fast-after", str(fast_after), "--notify-fast"
    )
    agent.enrol([shape.client, shape.server])
    flood = ("flood", "--host", host, "--port", str(port), "--bytes", str(64 * MiB), "--pause-at", str(fast_after))
    result, _, delta = measured(agent, shape, *flood)
    assert result["ok"], result
    assert delta["meshaccel_flow_control_switches_total{to=stack}"] >= 1
    assert delta["meshaccel_flow_control_switches_total{to=redirect}"] >= 1
    # Before the spill at most bound + one write was redirected.
    bound = FlowControl().boundBytes
    assert delta["meshaccel_redirected_bytes_total"] >= 2 * bound + CHUNK, "redirect did not resume after the lull"
    # Every byte of the stream (and the notice) was redirected or read from
    # the stack by a paired socket; the reply after the writer's half-close
    # may take plain TCP.
    assert delta.carried() >= 64 * MiB + 1, "a byte was not accounted for"


@pytest.mark.parametrize("shape_name", SHAPES)
def test_blocking_clients_half_close_and_read_without_eagain(shape_name: str, lab: Lab, agent: AgentProcess) -> None:
    """Blocking sockets, no timeout: send, shutdown(SHUT_WR), block in recv()
    for the reply. tcp_bpf_recvmsg() would answer the wake-up by the ACK of
    the client's own FIN with EAGAIN; the half-closed socket leaves the
    sockhash first, and reads as plain TCP."""
    shape = build_shape(shape_name, lab, agent)
    delta = Delta(agent)
    result = slow(shape.client, "halfclose", "--host", shape.host, "--port", str(shape.port), "--bytes",
                  str(16 * MiB), "--count", "25")  # fmt: skip
    assert result["ok"], result
    assert delta["meshaccel_pairs_total"] >= 25 * shape.hops
    assert delta["meshaccel_half_closes_total{outcome=left}"] >= 25


@pytest.mark.parametrize("shape_name", SHAPES)
def test_a_short_read_with_rdhup_is_the_end_of_the_stream(shape_name: str, lab: Lab, small_bound: AgentProcess) -> None:
    """On TCP a read shorter than asked while EPOLLRDHUP is set is the last
    one with data, and event loops rely on it (HAProxy ends the stream
    there). A spilled direction's reader holds redirected bytes on its
    ingress queue and stack bytes behind them, and tcp_bpf_recvmsg() stops
    at that boundary; the FIN gate keeps the FIN out until the ingress queue
    is read, so the boundary read comes without RDHUP (bpf/fin_gate.c).

    The reader waits 1 s with a 16 MiB receive window, so the spilled bytes
    and the writer's FIN are all in before its first read."""
    shape, host, port = slow_shape(shape_name, lab, small_bound, "--style", "rdhup", "--delay", "1")
    delta = Delta(small_bound)
    result = slow(shape.client, "halfclose", "--host", host, "--port", str(port), "--bytes", str(2 * MiB),
                  "--count", "3")  # fmt: skip
    assert result["ok"], result
    assert delta["meshaccel_flow_control_switches_total{to=stack}"] >= 3
    assert delta["meshaccel_fins_held_total"] >= 3


def test_wake_ups_without_data_on_a_blocking_reader(lab: Lab, small_bound: AgentProcess) -> None:
    """A blocking recv() and what wakes it before its data (meshaccel_lab.blocking).
    Kernel TCP always waits for the byte; accelerated, a second thread writing
    redirected bytes on the same socket leaves the reader asleep too. A signal,
    and the write-space wake-up once the writer's direction spilled, end the
    read with EAGAIN: tcp_bpf_recvmsg() waits once (README, Limitations). That
    half asserts the kernel's behaviour, not ours: when a kernel loops there,
    it fails, and the README's limitation and the self-test check go."""
    direct = build_shape("direct", lab, small_bound)
    small_bound.unenrol([direct.client, direct.server])
    for case in CASES:
        kernel = blocking.run(direct.client, direct.server, case, BLOCKING_PORT)
        assert kernel.get("returned") == "x" and kernel["after_s"] >= 0.55, (case, kernel)
    small_bound.enrol([direct.client, direct.server])
    delta = Delta(small_bound)
    accel = {case: blocking.run(direct.client, direct.server, case, BLOCKING_PORT) for case in CASES}
    assert accel["duplex"].get("returned") == "x" and accel["duplex"]["after_s"] >= 0.55, accel
    assert accel["signal"].get("errno") == errno.EAGAIN, accel
    assert accel["duplex-spilled"].get("errno") == errno.EAGAIN, accel
    assert delta["meshaccel_pairs_total"] >= 3, "every case ran accelerated"
    assert delta["meshaccel_flow_control_switches_total{to=stack}"] >= 1
