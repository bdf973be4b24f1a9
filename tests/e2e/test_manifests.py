"""The plain-kubectl install from manifests/ works as the README says, and
so does its removal (after the Helm lifecycle: test files run in order)."""

from __future__ import annotations

from tests.e2e import workloads
from tests.e2e.cluster import NAMESPACE, Cluster, run_readme, wait_for
from tests.e2e.test_lifecycle import SHOP, MiB, _generations_on_node, _pod, _ready, _service_ip


def test_kubectl_apply_manifests_installs_and_removes_everything(cluster: Cluster) -> None:
    run_readme(cluster, "kubectl-install")
    wait_for(lambda: cluster.agent_pods() and all(_ready(p) for p in cluster.agent_pods()), "agent Ready", 240)
    ip = _service_ip(cluster, SHOP, "mesh")
    pod = _pod(cluster, SHOP, "client-mesh")
    wait_for(lambda: f"{SHOP}/{pod}" in (cluster.get("nodeenrolments")["items"] or [{}])[0]
             .get("status", {}).get("enrolledPods", []), "client enrolled", 120)  # fmt: skip
    before = cluster.agent_metrics()
    result = cluster.traffic(SHOP, pod, "stream", "--host", ip, "--port", str(workloads.SINK_PORT),
                             "--bytes", str(32 * MiB))  # fmt: skip
    assert result["ok"], result
    after = cluster.agent_metrics()
    assert after["meshaccel_redirected_bytes_total"] - before.get("meshaccel_redirected_bytes_total", 0) >= 32 * MiB
    run_readme(cluster, "kubectl-uninstall")
    assert _generations_on_node(cluster) == [], "pins left on the node"
    assert cluster.node.meshaccel_sockops() == []
    assert not cluster.exists("namespace", NAMESPACE) or not cluster.get("pods", namespace=NAMESPACE)["items"]
    assert not cluster.get("nodeenrolments")["items"]
