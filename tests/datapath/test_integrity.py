"""Byte-exact delivery through every shape: sizes from 1 B to 16 MiB, a long
stream, many short connections, and ordering when the client writes right
after connect() while the server delays its first read."""

from __future__ import annotations

import pytest

from meshaccel_lab.topology import Lab
from tests.datapath.conftest import SHAPES, Delta, build_shape, client, echo_port, serve

MiB = 1 << 20
GiB = 1 << 30
SIZES = [1, 2, 3, 7, 100, 1448, 4095, 4096, 4097, 65535, 65536, 65537, 1 * MiB, 4 * MiB + 3, 16 * MiB]


@pytest.mark.parametrize("shape_name", SHAPES)
def test_message_sizes_echo_byte_exact(shape_name: str, lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    shape = build_shape(shape_name, lab, agent)
    delta = Delta(agent)
    result = client(shape.client, "sizes", shape.host, echo_port(shape), sizes=",".join(map(str, SIZES)))
    assert result["ok"], result
    # Both directions of every hop were accelerated (flow control included).
    assert delta.carried() >= 2 * shape.hops * sum(SIZES)


@pytest.mark.parametrize("shape_name", ["direct", "sidecar_to_sidecar"])
def test_two_gib_stream(shape_name: str, lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    shape = build_shape(shape_name, lab, agent)
    delta = Delta(agent)
    result = client(shape.client, "stream", shape.host, shape.port, bytes=2 * GiB, chunk=256 * 1024, timeout=600)
    assert result["ok"], result
    assert delta.carried() >= shape.hops * 2 * GiB


@pytest.mark.parametrize("shape_name", SHAPES)
def test_many_short_connections(shape_name: str, lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    shape = build_shape(shape_name, lab, agent)
    delta = Delta(agent)
    result = client(shape.client, "many", shape.host, shape.port, count=400, concurrency=16, bytes=20000, writes=5)
    assert result["ok"], result
    assert delta["meshaccel_pairs_total"] >= 400 * shape.hops * 0.9


def test_no_reorder_when_client_writes_before_server_reads(lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    """The handshake race: the client sends right after connect() (possibly
    before the server's side is established) and the server waits before its
    first read. Each direction must be redirected from its first byte or not
    at all, or redirected bytes would overtake stack bytes at the reader."""
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "sink", 9090, "--first-read-delay", "0.003")
    agent.enrol([a, b])
    delta = Delta(agent)
    result = client(a, "many", b.ip, 9090, count=3000, concurrency=32, bytes=49152, writes=12, timeout=600)
    assert result["ok"], result
    settled = delta["meshaccel_pairs_total"] + delta["meshaccel_pairs_settled_native_total"]
    assert settled >= 3000 * 0.99, "every connection settles as paired or native"
    assert delta["meshaccel_pairs_total"] > 0


def test_client_sending_before_server_enrols_settles_native(lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    """Force the handshake race: the server drops half of the final handshake
    ACKs, so those clients send their first bytes before the server side is
    established. Those pairs must settle native (both sockets leave the map
    before any redirect), the others pair, and every stream stays intact."""
    a, b = lab.add_pod("a"), lab.add_pod("b")
    b.sh(
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "9090",
        "--tcp-flags",
        "ALL",
        "ACK",
        "-m",
        "connbytes",
        "--connbytes",
        "2:2",
        "--connbytes-dir",
        "original",
        "--connbytes-mode",
        "packets",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.5",
        "-j",
        "DROP",
    )
    serve(b, "sink", 9090, "--first-read-delay", "0.003")
    agent.enrol([a, b])
    delta = Delta(agent)
    result = client(a, "many", b.ip, 9090, count=400, concurrency=16, bytes=49152, writes=12)
    assert result["ok"], result
    native = delta["meshaccel_pairs_settled_native_total"]
    paired = delta["meshaccel_pairs_total"]
    assert native > 0 and paired > 0, (native, paired)
    assert native + paired >= 400 * 0.99
    # A socket of a native pair never stays in the map.
    assert agent.metric("meshaccel_sockets_enrolled") == 0
