"""The node agent in Kubernetes mode, for real: the operator and the API server
decide, the agent resolves pods to network namespaces on this host, loads the
datapath, accelerates traffic between them and reports back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshaccel_agent.datapath.pins import PinRoot
from meshaccel_agent.kernel.host import ensure_bpffs
from meshaccel_lab.controlplane import (
    KubeAgentProcess,
    OperatorProcess,
    create_running_pod,
    get_json,
    install,
    pod_manifest,
)
from meshaccel_lab.kube import KubeAPI
from meshaccel_lab.kubelet import FakeKubelet
from meshaccel_lab.topology import Lab, Pod, wait_for
from meshaccel_operator.deploy import NAMESPACE

pytestmark = pytest.mark.bpf

NODE = "node-bpf"
ECHO_PORT = 8081


@pytest.fixture(scope="module")
def operator(kube: KubeAPI) -> Iterator[OperatorProcess]:
    if os.geteuid() != 0:
        pytest.fail("needs root (BPF, network namespaces, cgroups)", pytrace=False)
    install(kube)
    kube.kubectl("apply", "-f", "-", input="apiVersion: meshaccel.io/v1alpha1\nkind: AccelerationPolicy\n"
                 "metadata: {name: default}\nspec: {}\n")  # fmt: skip
    op = OperatorProcess(kube)
    op.start(timeout=60)
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def node(kube: KubeAPI, operator: OperatorProcess) -> Iterator[tuple[Lab, FakeKubelet]]:
    # A node's bpffs is mounted by its init system; the agent in a cluster
    # does not mount one (NoBPFFS). The test session unmounts it at the end.
    ensure_bpffs("/sys/fs/bpf")
    lab, kubelet = Lab(), FakeKubelet()
    try:
        yield lab, kubelet
    finally:
        try:
            kubelet.close()
        finally:
            lab.close()


def echo_server(pod: Pod, banner: str) -> None:
    pod.spawn([sys.executable, "-m", "meshaccel_lab.traffic", "echo", "--port", str(ECHO_PORT), "--host", "0.0.0.0"])
    wait_for(lambda: f":{ECHO_PORT} " in pod.sh("ss", "-Hltn"), what=f"echo server in {banner}")


def echo(client: Pod, host: str, size: int = 1 << 20) -> dict[str, Any]:
    res = subprocess.run(
        ["ip", "netns", "exec", client.netns, sys.executable, "-m", "meshaccel_lab.traffic", "sizes",
         "--host", host, "--port", str(ECHO_PORT), "--sizes", str(size)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = res.stdout.strip().splitlines()
    assert lines, res.stderr[-2000:]
    return dict(json.loads(lines[-1]))


def api_pod(kube: KubeAPI, kubelet: FakeKubelet, lab_pod: Pod, ns: str, name: str, sidecar: bool = True) -> str:
    uid = create_running_pod(kube, pod_manifest(name, ns, NODE, sidecar=sidecar), lab_pod.ip)
    kubelet.run_pod(lab_pod, uid)
    return uid


def node_status(kube: KubeAPI) -> dict[str, Any]:
    return dict(get_json(kube, "nodeenrolment", NODE).get("status") or {})


def condition(status: dict[str, Any], type_: str) -> str:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == type_), "")


def test_agent_enrols_resolved_pods_accelerates_and_reports(
    kube: KubeAPI, operator: OperatorProcess, node: tuple[Lab, FakeKubelet]
) -> None:
    lab, kubelet = node
    ns = "bpf-shop"
    kube.ensure_namespace(ns, {"meshaccel.io/accelerate": "enabled"})
    a, b = lab.add_pod("a"), lab.add_pod("b")
    api_pod(kube, kubelet, a, ns, "client")
    api_pod(kube, kubelet, b, ns, "server")
    echo_server(b, "b")

    agent = KubeAgentProcess(kube, NODE, kubelet.root)
    try:
        agent.start()  # inside: a failed start still stops the process
        wait_for(lambda: node_status(kube).get("podsEnrolled") == 2, 30, "the agent to report 2 pods enrolled")
        st = node_status(kube)
        assert st["datapathAttached"] is True and st["kernel"] == os.uname().release
        assert sorted(st["enrolledPods"]) == [f"{ns}/client", f"{ns}/server"] and st["problems"] == []
        assert condition(st, "Ready") == "True" and condition(st, "KernelSupported") == "True"
        assert condition(st, "Degraded") == "False"
        assert st["features"]["selftest.redirect"] is True
        # Nothing changes: nothing is written (bounded, change-driven status).
        writes = agent.metrics()["meshaccel_status_writes_total"]
        time.sleep(3)
        assert agent.metrics()["meshaccel_status_writes_total"] == writes

        before = agent.metrics().get("meshaccel_redirected_bytes_total", 0.0)
        result = echo(a, b.ip)
        assert result["ok"], result
        assert agent.metrics()["meshaccel_redirected_bytes_total"] - before >= 2 * (1 << 20)
        # Counters reach the node object, then the policy status.
        wait_for(lambda: node_status(kube)["counters"]["bytesRedirected"] >= 2 * (1 << 20), 15, "node counters")

        def policy() -> dict[str, Any]:
            return dict(get_json(kube, "accelerationpolicy", "default").get("status") or {})

        wait_for(lambda: policy().get("acceleratedPods", 0) >= 2, 15, "the policy to count both pods")

        # The API server restarts and its history is compacted: the agent's
        # watch resumes (or lists again after 410 Gone: tests/k8s/test_listwatch.py
        # proves that path with a live watcher), keeping its enrolment meanwhile,
        # and sees the next change.
        kube.restart_apiserver(compact=True)
        assert echo(a, b.ip, 4096)["ok"]
        # Opt one pod out: the operator drops it, the agent un-enrols it, and
        # a new connection between them stays on kernel TCP.
        kube.kubectl("label", "pod", "server", "-n", ns, "meshaccel.io/accelerate=disabled")
        wait_for(lambda: node_status(kube).get("podsEnrolled") == 1, 15, "the agent to drop the opted-out pod")
        before = agent.metrics()["meshaccel_redirected_bytes_total"]
        assert echo(a, b.ip)["ok"]
        assert agent.metrics()["meshaccel_redirected_bytes_total"] == before
    finally:
        agent.stop()
        print(agent.log()[-3000:])
        kube.kubectl("delete", "pods", "--all", "-n", ns, "--wait=false")
    # A DaemonSet that does not exist means uninstall: detached and unpinned.
    assert not PinRoot("/sys/fs/bpf").path.exists()


@pytest.fixture
def daemonset(kube: KubeAPI) -> Iterator[None]:
    """The agent's DaemonSet exists: a stopping agent is being restarted."""
    kube.apply(
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "meshaccel-agent", "namespace": NAMESPACE},
         "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                  "spec": {"containers": [{"name": "agent", "image": "x"}]}}}})  # fmt: skip
    try:
        yield
    finally:
        kube.kubectl("delete", "ds", "meshaccel-agent", "-n", NAMESPACE, "--ignore-not-found")
        subprocess.run([sys.executable, "-m", "meshaccel_agent", "cleanup", "--wait", "10"], check=True)


def test_pod_to_netns_resolution_cannot_be_forged(
    kube: KubeAPI, operator: OperatorProcess, node: tuple[Lab, FakeKubelet], daemonset: None
) -> None:
    lab, kubelet = node
    ns = "bpf-evil"
    kube.ensure_namespace(ns, {"meshaccel.io/accelerate": "enabled"})
    victim, thief, b = lab.add_pod("victim"), lab.add_pod("thief"), lab.add_pod("peer")
    api_pod(kube, kubelet, victim, ns, "victim")
    api_pod(kube, kubelet, thief, ns, "thief")
    api_pod(kube, kubelet, b, ns, "peer")
    # The thief (CAP_NET_ADMIN in its own netns) adds the victim's IP to its
    # interface, and a second API pod points its cgroup at the victim's netns.
    thief.sh("ip", "addr", "add", f"{victim.ip}/32", "dev", "lo")
    # (The twin's own IP is configured there too, so only the shared netns
    # gives it away.)
    victim.sh("ip", "addr", "add", "10.200.0.77/32", "dev", "lo")
    twin_uid = create_running_pod(kube, pod_manifest("twin", ns, NODE), "10.200.0.77")
    kubelet.run_pod(victim, twin_uid)
    # An API pod whose IP is not in its netns, and one with no cgroup at all.
    ghost = lab.add_pod("ghost")
    api_pod(kube, kubelet, ghost, ns, "wrong-ip")
    kube.kubectl("patch", "pod", "wrong-ip", "-n", ns, "--subresource=status", "--type=merge",
                 "-p", '{"status":{"podIP":"10.200.0.99","podIPs":[{"ip":"10.200.0.99"}]}}')  # fmt: skip
    create_running_pod(kube, pod_manifest("no-cgroup", ns, NODE), "10.200.0.98")
    agent = KubeAgentProcess(kube, NODE, kubelet.root)
    try:
        agent.start()  # inside: a failed start still stops the process

        def problems() -> dict[str, str]:
            found = node_status(kube).get("problems", [])
            return {p["pod"]: p["reason"] for p in found if p["pod"].startswith(f"{ns}/")}

        expected = {
            f"{ns}/victim": "NetnsShared",
            f"{ns}/twin": "NetnsShared",
            f"{ns}/wrong-ip": "IPNotInNetns",
            f"{ns}/no-cgroup": "PodCgroupNotFound",
        }
        wait_for(lambda: problems() == expected, 30, f"problems == {expected}")
        st = node_status(kube)
        mine = sorted(p for p in st["enrolledPods"] if p.startswith(f"{ns}/"))
        assert mine == [f"{ns}/peer", f"{ns}/thief"]
        # The thief is enrolled with its own IP only: the victim's address
        # still belongs to nobody in the datapath, so no stolen redirect.
        echo_server(victim, "victim")
        echo_server(thief, "thief")
        before = agent.metrics().get("meshaccel_redirected_bytes_total", 0.0)
        # peer -> the victim's IP: whichever pod answers it on the bridge
        # (the thief may win the ARP race; that is the network's business),
        # the connection stays on kernel TCP: the datapath accepts a SYN only
        # at an address the receiving namespace owns.
        for _ in range(5):
            assert echo(b, victim.ip, 4096)["ok"]
        assert agent.metrics()["meshaccel_redirected_bytes_total"] == before
        # peer -> thief (its own IP) is accelerated as usual.
        assert echo(b, thief.ip, 4096)["ok"]
        assert agent.metrics()["meshaccel_redirected_bytes_total"] > before
    finally:
        agent.stop()
        print(agent.log()[-3000:])
    # The DaemonSet still exists: a restart, so the datapath stays pinned.
    assert PinRoot("/sys/fs/bpf").path.exists(), "the agent uninstalled on a restart"
