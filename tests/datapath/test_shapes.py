"""Each traffic shape is paired and accelerated, proven by the map contents
while the connection is open and by the redirect counters afterwards."""

from __future__ import annotations

import threading

import pytest

from meshaccel_agent.datapath.pins import PinRoot
from meshaccel_lab.sidecar import INBOUND_PORT, OUTBOUND_PORT
from meshaccel_lab.topology import Lab, wait_for
from tests.datapath.conftest import SHAPES, SINK_PORT, Delta, Shape, build_shape, client, serve

MiB = 1 << 20


def enrolled() -> set[tuple[int, str, int, str, int]]:
    """(netns cookie, local ip, local port, remote ip, remote port) in the sockhash."""
    return {k.describe() for gen in PinRoot("/sys/fs/bpf").generations() for k in gen.sockhash_keys()}


def expected_sockets(shape: Shape) -> list[tuple[str, object]]:
    """Predicates over sockhash entries that only this shape produces."""
    a, b = shape.cookie(shape.client), shape.cookie(shape.server)
    ip_a, ip_b = shape.client.ip, shape.server.ip
    checks: dict[str, list[tuple[str, object]]] = {
        "direct": [
            ("client a -> b:8080", lambda k: k[0] == a and k[1] == ip_a and (k[3], k[4]) == (ip_b, SINK_PORT)),
            ("server b:8080 <- a", lambda k: k[0] == b and (k[1], k[2]) == (ip_b, SINK_PORT) and k[3] == ip_a),
        ],
        "clusterip": [
            ("client a -> VIP:80 (DNATed)", lambda k: k[0] == a and (k[3], k[4]) == (shape.host, shape.port)),
            ("server b:8080 <- a", lambda k: k[0] == b and (k[1], k[2]) == (ip_b, SINK_PORT) and k[3] == ip_a),
        ],
        "sidecar_outbound": [
            ("app a -> b:8080 (REDIRECTed)", lambda k: k[0] == a and (k[3], k[4]) == (ip_b, SINK_PORT)),
            ("sidecar a 15001 <- app", lambda k: k[0] == a and k[2] == OUTBOUND_PORT and k[3] == ip_a),
        ],
        "sidecar_inbound": [
            ("sidecar b 15006 <- a", lambda k: k[0] == b and k[2] == INBOUND_PORT and k[3] == ip_a),
            ("sidecar 127.0.0.6 -> app b:8080", lambda k: k[0] == b and k[1] == "127.0.0.6" and k[4] == SINK_PORT),
            ("app b:8080 <- 127.0.0.6", lambda k: k[0] == b and k[2] == SINK_PORT and k[3] == "127.0.0.6"),
        ],
        "sidecar_to_sidecar": [
            ("sidecar a 15001 <- app", lambda k: k[0] == a and k[2] == OUTBOUND_PORT),
            (
                "sidecar a -> b:8080",
                lambda k: k[0] == a and k[3] == ip_b and k[4] == SINK_PORT and k[2] != OUTBOUND_PORT,
            ),
            ("sidecar b 15006 <- sidecar a", lambda k: k[0] == b and k[2] == INBOUND_PORT),
            ("app b:8080 <- 127.0.0.6", lambda k: k[0] == b and k[2] == SINK_PORT and k[3] == "127.0.0.6"),
        ],
    }
    return checks[shape.name]


@pytest.mark.parametrize("shape_name", SHAPES)
def test_shape_is_paired_and_redirected(shape_name: str, lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    shape = build_shape(shape_name, lab, agent)
    delta = Delta(agent)
    result: dict[str, object] = {}
    # The client holds its connection open for a while before sending, so the
    # map can be inspected with every hop established.
    sender = threading.Thread(
        target=lambda: result.update(client(shape.client, "stream", shape.host, shape.port, bytes=64 * MiB, hold=2))
    )
    sender.start()
    missing: list[str] = []

    def all_present() -> bool:
        keys = enrolled()
        missing[:] = [name for name, pred in expected_sockets(shape) if not any(pred(k) for k in keys)]  # type: ignore[operator]
        return not missing

    try:
        wait_for(all_present, timeout=5, what=f"{shape_name} sockets in the sockhash")
    except TimeoutError:
        pytest.fail(f"{shape_name}: not enrolled: {missing}; sockhash holds {sorted(enrolled())}")
    finally:
        sender.join(120)
    assert result.get("ok"), result
    assert delta["meshaccel_pairs_total"] >= shape.hops
    # Every hop carried the whole stream: redirected, or through the stack
    # while its reader (the sink hashes what it reads) owed the bound.
    assert delta.carried() >= shape.hops * 64 * MiB
    assert delta["meshaccel_redirected_bytes_total"] >= shape.hops * 16 * MiB
    assert delta["meshaccel_passed_messages_total{reason=native}"] == 0


def test_excluded_ports_are_never_accelerated(lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "sink", 8080)
    serve(b, "sink", 8082)
    agent.enrol([a], excluded_ports=[])
    agent.enrol([b], excluded_ports=[8080])  # the server side excludes 8080
    delta = Delta(agent)
    assert client(a, "stream", b.ip, 8080, bytes=4 * MiB)["ok"]
    assert delta["meshaccel_pairs_total"] == 0 and delta["meshaccel_socket_enrolments_total"] == 0
    assert client(a, "stream", b.ip, 8082, bytes=4 * MiB)["ok"]
    assert delta["meshaccel_pairs_total"] == 1
    agent.enrol([a], excluded_ports=[8082])  # now the client side excludes 8082
    delta = Delta(agent)
    assert client(a, "stream", b.ip, 8082, bytes=4 * MiB)["ok"]
    assert delta["meshaccel_pairs_total"] == 0 and delta["meshaccel_socket_enrolments_total"] == 0


def test_policy_shapes_select_the_hops(lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    """`direct` accelerates pod <-> pod only, `sidecar` app <-> proxy inside a
    pod only; a connection needs its shape allowed at both ends."""
    shape = build_shape("sidecar_to_sidecar", lab, agent)  # app -> proxy -> proxy -> app: 1 direct hop, 2 sidecar
    a, b = shape.client, shape.server
    for shapes, pairs in ((["direct"], 1), (["sidecar"], 2)):
        agent.enrol([a, b], shapes=shapes)
        delta = Delta(agent)
        assert client(a, "stream", shape.host, shape.port, bytes=4 * MiB)["ok"]
        assert delta["meshaccel_pairs_total"] == pairs, shapes
    agent.enrol([a], shapes=["sidecar"])
    agent.enrol([b], shapes=["direct"])  # a's sidecar hop only; the direct hop is refused by a
    delta = Delta(agent)
    assert client(a, "stream", shape.host, shape.port, bytes=4 * MiB)["ok"]
    assert delta["meshaccel_pairs_total"] == 1
