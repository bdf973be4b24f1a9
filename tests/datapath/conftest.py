"""Fixtures for the `bpf` tier: one real agent for the package, a fresh lab per test.

These tests need root and a BPF-capable kernel; `make test` runs them as
root after scripts/setup.sh installed BCC, the headers and the peers.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from meshaccel_agent.datapath.pins import PinRoot
from meshaccel_agent.kernel.host import find_cgroup2
from meshaccel_agent.kernel.netns import netns_cookie
from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.sidecar import add_sidecar
from meshaccel_lab.topology import Lab, Pod, wait_for

SINK_PORT = 8080
ECHO_PORT = 8081
SERVICE_VIP = "10.96.0.10"
SERVICE_PORT = 80


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/datapath/" in str(item.fspath):
            item.add_marker(pytest.mark.bpf)


# Package scope: the agent is gone (detached, unpinned) before tests/k8s runs
# its own Kubernetes-mode agent on the same host.
@pytest.fixture(scope="package")
def agent() -> Iterator[AgentProcess]:
    if os.geteuid() != 0:
        pytest.fail("the bpf tier needs root: run `make test` as root", pytrace=False)
    proc = AgentProcess()
    proc.start()
    try:
        yield proc
    finally:
        proc.close()
        assert not PinRoot("/sys/fs/bpf").path.exists(), "cleanup left pins behind"
        leftovers = glob.glob(os.path.join(find_cgroup2(), "meshaccel-selftest-*"))
        assert not leftovers, f"self-test cgroups left behind: {leftovers}"


@pytest.fixture
def lab(agent: AgentProcess) -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        try:
            agent.unenrol(lab.pods.values(), wait=agent.proc is not None and agent.proc.poll() is None)
        finally:
            lab.close()  # also when the agent is gone or unenrolling failed


def traffic(pod: Pod, *args: str, timeout: float = 300) -> dict[str, object]:
    """Run a checked client in @pod and return its JSON verdict."""
    res = subprocess.run(
        ["ip", "netns", "exec", pod.netns, sys.executable, "-m", "meshaccel_lab.traffic", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = res.stdout.strip().splitlines()
    assert lines, f"client printed nothing (rc={res.returncode}): {res.stderr[-2000:]}"
    return dict(json.loads(lines[-1]))


def client(pod: Pod, mode: str, host: str, port: int, timeout: float = 300, **options: object) -> dict[str, object]:
    """traffic() with keyword options: bytes=..., first_read_delay=... -> --bytes, --first-read-delay."""
    args = [mode, "--host", host, "--port", str(port)]
    for name, value in options.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return traffic(pod, *args, timeout=timeout)


def serve(pod: Pod, mode: str, port: int, *extra: str, host: str = "0.0.0.0") -> None:
    pod.spawn([sys.executable, "-m", "meshaccel_lab.traffic", mode, "--port", str(port), "--host", host, *extra])
    wait_for(lambda: f":{port} " in pod.sh("ss", "-Hltn"), what=f"{mode} server on {pod.name}:{port}")


@dataclass
class Shape:
    """One traffic shape: where the client connects and how many hops pair."""

    name: str
    client: Pod
    server: Pod
    host: str
    port: int
    hops: int  # accelerated connections per client connection

    def cookie(self, pod: Pod) -> int:
        return netns_cookie(pod.netns_path)


SHAPES = ["direct", "clusterip", "sidecar_outbound", "sidecar_inbound", "sidecar_to_sidecar"]


def build_shape(name: str, lab: Lab, agent: AgentProcess) -> Shape:
    """Client pod `a`, server pod `b` running a sink on 8080 and an echo on 8081."""
    a, b = lab.add_pod("a"), lab.add_pod("b")
    if name in ("sidecar_outbound", "sidecar_to_sidecar"):
        add_sidecar(a)
    if name in ("sidecar_inbound", "sidecar_to_sidecar"):
        add_sidecar(b)
    serve(b, "sink", SINK_PORT)
    serve(b, "echo", ECHO_PORT)
    agent.enrol([a, b])
    host = b.ip
    if name == "clusterip":
        lab.add_service(SERVICE_VIP, SERVICE_PORT, b, SINK_PORT)
        lab.add_service(SERVICE_VIP, SERVICE_PORT + 1, b, ECHO_PORT)
        return Shape(name, a, b, SERVICE_VIP, SERVICE_PORT, 1)
    hops = {"direct": 1, "sidecar_outbound": 2, "sidecar_inbound": 2, "sidecar_to_sidecar": 3}[name]
    return Shape(name, a, b, host, SINK_PORT, hops)


def echo_port(shape: Shape) -> int:
    return shape.port + 1 if shape.name == "clusterip" else ECHO_PORT


class Delta:
    """Counter changes of the agent across a block."""

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.before = agent.metrics()

    def __getitem__(self, name: str) -> float:
        return self.agent.metrics().get(name, 0.0) - self.before.get(name, 0.0)

    def carried(self) -> float:
        """Bytes of accelerated connections: redirected, or read from the
        stack by a paired socket (flow control, half-close). Both are exact:
        the stack part is counted at the reader (bpf/recv.c)."""
        return self["meshaccel_redirected_bytes_total"] + self["meshaccel_stack_read_bytes_total"]


def probe(agent: AgentProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(agent.url + path, timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()
    except OSError:
        return 0, ""


@contextlib.contextmanager
def agent_with(agent: AgentProcess, *args: str, wait_ready: bool = True) -> Iterator[None]:
    """The agent restarted with extra flags for the block, then as before."""
    agent.stop()
    try:
        if wait_ready:
            agent.start(*args)
        else:
            agent.spawn(*args)
            wait_for(lambda: probe(agent, "/healthz")[0] == 200, 60, "the agent to serve probes")
        yield
    finally:
        agent.stop()
        agent.start()
