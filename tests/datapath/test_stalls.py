"""No stalls: epoll (asyncio) servers and clients, FIONREAD, and connections
where only one end is eligible for acceleration."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshaccel_lab.topology import Lab, Pod
from tests.datapath.conftest import SHAPES, Delta, build_shape, serve, traffic

ASYNC_PORT = 8090


@pytest.mark.parametrize("shape_name", SHAPES)
def test_asyncio_echo_never_stalls(shape_name: str, lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    shape = build_shape(shape_name, lab, agent)
    serve(shape.server, "aecho", ASYNC_PORT)
    if shape_name == "clusterip":
        lab.add_service(shape.host, ASYNC_PORT, shape.server, ASYNC_PORT)
    delta = Delta(agent)
    result = traffic(
        shape.client,
        "aclients",
        "--host",
        shape.host,
        "--port",
        str(ASYNC_PORT),
        "--conns",
        "60",
        "--rounds",
        "60",
        "--stall",
        "1.0",
    )
    assert result["ok"], result
    assert delta["meshaccel_pairs_total"] >= 60 * shape.hops
    assert delta["meshaccel_redirected_messages_total"] >= 2 * 60 * 60 * shape.hops


def test_enrolled_to_unenrolled_pod_stays_native_and_flows(lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    a, c = lab.add_pod("a"), lab.add_pod("c")  # only a is enrolled
    serve(c, "aecho", ASYNC_PORT)
    serve(c, "sink", 8080)
    agent.enrol([a])
    delta = Delta(agent)
    result = traffic(a, "aclients", "--host", c.ip, "--port", str(ASYNC_PORT), "--conns", "40", "--rounds", "40")
    assert result["ok"], result
    assert traffic(a, "stream", "--host", c.ip, "--port", "8080", "--bytes", str(64 << 20))["ok"]
    # Neither end entered the map: no socket half-enrolled.
    assert delta["meshaccel_socket_enrolments_total"] == 0
    assert delta["meshaccel_redirected_messages_total"] == 0


FIONREAD_PROBE = r"""
import array, fcntl, json, socket, sys, termios, time
host, n = sys.argv[1], int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 7171)); srv.listen(1)
c = socket.create_connection((host, 7171), timeout=10)
s, _ = srv.accept()
c.sendall(b"q" * n)
deadline = time.monotonic() + 5
buf = array.array("i", [0])
while time.monotonic() < deadline:
    fcntl.ioctl(s.fileno(), termios.FIONREAD, buf, True)
    if buf[0] >= n: break
    time.sleep(0.01)
print(json.dumps({"fionread": buf[0]}))
"""


def fionread(pod: Pod, host: str, n: int) -> int:
    res = subprocess.run(
        ["ip", "netns", "exec", pod.netns, sys.executable, "-c", FIONREAD_PROBE, host, str(n)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    return int(json.loads(res.stdout)["fionread"])


def test_fionread_counts_redirected_bytes(lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    a = lab.add_pod("a")
    assert fionread(a, a.ip, 12345) == 12345  # kernel TCP
    agent.enrol([a])
    delta = Delta(agent)
    assert fionread(a, a.ip, 12345) == 12345  # accelerated
    assert delta["meshaccel_redirected_bytes_total"] >= 12345
