"""Which sockets may leave the sockhash during uninstall: only those whose
reader has read everything redirected to them."""

from __future__ import annotations

from meshaccel_agent.datapath.uninstall import FROM_CLIENT, FROM_SERVER, drained
from meshaccel_agent.kernel.layout import Flow, FlowKey, OriginKey, SockKey, ip_to_be32

A, B = ip_to_be32("10.0.0.2"), ip_to_be32("10.0.0.3")
LO = ip_to_be32("127.0.0.1")
NS_A, NS_B = 11, 22


def flow(netns: int, ip: int, port: int, to_client_unread: int = 0, to_server_unread: int = 0) -> tuple[FlowKey, Flow]:
    key = FlowKey(origin=OriginKey(netns=netns, ip4=ip, port=port), client_next_seq=1, server_next_seq=2)
    value = Flow()
    value.dir[FROM_CLIENT].redirected = 100 + to_server_unread
    value.dir[FROM_CLIENT].read_redirected = 100
    value.dir[FROM_SERVER].redirected = 50 + to_client_unread
    value.dir[FROM_SERVER].read_redirected = 50
    return key, value


def sock(netns: int, local: int, lport: int, remote: int, rport: int) -> SockKey:
    return SockKey(netns=netns, local_ip4=local, local_port=lport, remote_ip4=remote, remote_port=rport)


def test_each_end_waits_for_its_own_incoming_direction() -> None:
    client = sock(NS_A, A, 40000, B, 80)
    server = sock(NS_B, B, 80, A, 40000)
    # The server's reply is not read by the client yet: only the server may go.
    assert drained([client, server], [flow(NS_A, A, 40000, to_client_unread=10)]) == [server]
    assert drained([client, server], [flow(NS_A, A, 40000, to_server_unread=10)]) == [client]
    assert drained([client, server], [flow(NS_A, A, 40000)]) == [client, server]


def test_loopback_matches_only_inside_one_namespace() -> None:
    """Two pods use the same loopback 4-tuple: each flow speaks for its own."""
    client_a, server_a = sock(NS_A, LO, 5000, LO, 15001), sock(NS_A, LO, 15001, LO, 5000)
    client_b, server_b = sock(NS_B, LO, 5000, LO, 15001), sock(NS_B, LO, 15001, LO, 5000)
    flows = [flow(NS_A, LO, 5000, to_server_unread=1), flow(NS_B, LO, 5000)]
    assert drained([client_a, server_a, client_b, server_b], flows) == [client_a, client_b, server_b]


def test_a_socket_without_flow_receives_no_redirects() -> None:
    lone = sock(NS_A, A, 1, B, 2)
    assert drained([lone], []) == [lone]


def test_a_reused_port_waits_for_every_flow_it_matches() -> None:
    client = sock(NS_A, A, 40000, B, 80)
    old, new = flow(NS_A, A, 40000, to_client_unread=5), flow(NS_A, A, 40000)
    new[0].client_next_seq = 999
    assert drained([client], [old, new]) == []
