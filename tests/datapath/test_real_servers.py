"""Servers and clients nobody here wrote, through the accelerated path:
nginx with curl and wrk, redis-server with redis-benchmark and redis-cli."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from meshaccel_lab.servers import start_nginx, start_redis
from meshaccel_lab.sidecar import add_sidecar
from meshaccel_lab.topology import Lab
from tests.datapath.conftest import Delta


@pytest.mark.parametrize("sidecars", [False, True], ids=["direct", "sidecar_to_sidecar"])
def test_nginx_with_curl_and_wrk(sidecars: bool, lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    a, b = lab.add_pod("a"), lab.add_pod("b")
    if sidecars:
        add_sidecar(a)
        add_sidecar(b)
    body = os.urandom(3 * 1024 * 1024 + 17)
    start_nginx(b, lab, {"blob": body, "index.html": b"hello from nginx\n"})
    agent.enrol([a, b])
    delta = Delta(agent)
    out = lab.write_file("blob.out", "")
    a.sh("curl", "-sSf", "-o", str(out), f"http://{b.ip}:8080/blob")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    assert delta["meshaccel_redirected_bytes_total"] >= len(body)

    report = a.sh("wrk", "-t1", "-c16", "-d2s", f"http://{b.ip}:8080/index.html")
    requests = int(re.search(r"(\d+) requests in", report).group(1))  # type: ignore[union-attr]
    assert requests > 100, report
    assert "Socket errors" not in report and "Non-2xx" not in report, report
    assert delta["meshaccel_pairs_total"] >= 16


def test_redis_benchmark_and_values(lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    a, b = lab.add_pod("a"), lab.add_pod("b")
    start_redis(b)
    agent.enrol([a, b])
    delta = Delta(agent)
    report = a.sh("redis-benchmark", "-h", b.ip, "-p", "6379", "-n", "20000", "-c", "20", "-t", "set,get", "-q")
    rates = re.findall(r"(SET|GET): ([\d.]+) requests per second", report)
    assert {name for name, _ in rates} == {"SET", "GET"}, report
    value = hashlib.sha256(b"seed").hexdigest() * 4000  # 256 KB
    assert a.sh("redis-cli", "-h", b.ip, "-x", "set", "big", input=value).strip() == "OK"
    assert a.sh("redis-cli", "-h", b.ip, "--no-raw", "strlen", "big").strip() == f"(integer) {len(value)}"
    assert a.sh("redis-cli", "-h", b.ip, "get", "big").rstrip("\n") == value
    assert delta["meshaccel_pairs_total"] >= 20
    assert delta["meshaccel_redirected_bytes_total"] >= 2 * len(value)
