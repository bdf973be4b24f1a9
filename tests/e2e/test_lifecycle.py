"""meshaccel's life on a real node, in the order a platform team meets it:
install with Helm as the README says, mesh traffic accelerated byte-exact,
what must never be enrolled, a rollout restart and an image upgrade under
live checked traffic, a degraded agent, and `helm uninstall`.

The tests run in file order and build on each other (one installation).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from meshaccel_monitoring import alerts, dashboard
from meshaccel_monitoring.picture import draw
from meshaccel_monitoring.prometheus import Prometheus, grafana_to_promql, pod_targets
from tests.e2e import workloads
from tests.e2e.cluster import AGENT_IMAGE, NAMESPACE, TRAFFIC, Cluster, E2EError, run_readme, wait_for

SHOP, OTHER = "shop", "elsewhere"
MiB = 1 << 20
NODE_PINS = "/sys/fs/bpf/meshaccel"
DASHBOARD = Path(__file__).resolve().parents[2] / "charts/meshaccel/files/dashboards/meshaccel.json"


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _all_ready(cluster: Cluster, namespace: str, names: list[str]) -> bool:
    pods = {p["metadata"]["name"]: p for p in cluster.get("pods", namespace=namespace)["items"]}
    found = {n: p for n, p in pods.items() if any(n == want or n.startswith(want + "-") for want in names)}
    return len(found) >= len(names) and all(_ready(p) for p in found.values())


def _pod(cluster: Cluster, namespace: str, prefix: str) -> str:
    for p in cluster.get("pods", namespace=namespace)["items"]:
        name = p["metadata"]["name"]
        if (name == prefix or name.startswith(prefix + "-")) and not p["metadata"].get("deletionTimestamp"):
            return str(name)
    raise E2EError(f"no pod {prefix} in {namespace}")


def _node_enrolment(cluster: Cluster) -> dict[str, Any]:
    items = cluster.get("nodeenrolments")["items"]
    if len(items) != 1:
        raise E2EError(f"expected one NodeEnrolment (one node), got {len(items)}")
    return dict(items[0])


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def _service_ip(cluster: Cluster, namespace: str, name: str) -> str:
    return str(cluster.get("service", name, namespace)["spec"]["clusterIP"])


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


class Disruption:
    """traffic.py disrupt in a client pod, in the background: long-lived
    checked echo connections plus new connections at a steady rate."""

    def __init__(self, cluster: Cluster, pod: str, host: str, seconds: float) -> None:
        cmd = ["kubectl", f"--kubeconfig={cluster.kubeconfig}", "exec", "-n", SHOP, pod, "-c", "app", "--",
               *TRAFFIC, "disrupt", "--host", host, "--port", str(workloads.ECHO_PORT), "--duration", str(seconds),
               "--long", "8", "--rate", "10", "--stall", "2"]  # fmt: skip
        self.seconds = seconds
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=self.seconds + 120)
        lines = out.strip().splitlines()
        if not lines:
            raise E2EError(f"disruption checker printed nothing: {err.strip()[-800:]}")
        return dict(json.loads(lines[-1]))


def _agent_log(cluster: Cluster) -> str:
    pod = _pod(cluster, NAMESPACE, "meshaccel-agent")
    return cluster.kubectl("logs", "-n", NAMESPACE, pod, "-c", "agent")


def _generations_on_node(cluster: Cluster) -> list[str]:
    res = cluster.node.sh(f"ls {NODE_PINS} 2>/dev/null")
    return sorted(res.stdout.split())


def _wait_agent_rolled(cluster: Cluster, image: str) -> None:
    def rolled() -> bool:
        pods = cluster.agent_pods()
        return bool(pods) and all(
            p["spec"]["containers"][0]["image"] == image and _ready(p) and not p["metadata"].get("deletionTimestamp")
            for p in pods
        )

    wait_for(rolled, f"agent pods running {image}", timeout=180)


# -- install -------------------------------------------------------------------


def test_helm_install_as_the_readme_says(cluster: Cluster) -> None:
    run_readme(cluster, "helm-install")
    wait_for(lambda: _all_ready(cluster, NAMESPACE, ["meshaccel-operator"]), "operator Ready", 180)
    wait_for(lambda: cluster.agent_pods() and all(_ready(p) for p in cluster.agent_pods()), "agent Ready", 180)
    agent = cluster.get("nodeagent", "meshaccel-agent", NAMESPACE)
    wait_for(
        lambda: cluster.get("nodeagent", "meshaccel-agent", NAMESPACE).get("status", {}).get("nodesReady") == 1,
        "NodeAgent status: 1 node ready",
        60,
    )
    assert agent["spec"]["image"] == AGENT_IMAGE
    metrics = cluster.agent_metrics()
    assert metrics["meshaccel_datapath_attached"] == 1
    # The pins are in the host's bpffs (mounted by the init container if it
    # was not), so they outlive the agent pod.
    mounts = cluster.node.sh("grep ' /sys/fs/bpf bpf ' /proc/mounts").stdout
    assert mounts, "no bpffs at /sys/fs/bpf on the node"
    assert _generations_on_node(cluster) == ["current"]
    ne = wait_for(lambda: _condition(_node_enrolment(cluster), "KernelSupported"), "NodeEnrolment status", 60)
    assert ne["status"] == "True", ne


# -- traffic -------------------------------------------------------------------


def test_mesh_traffic_is_accelerated_byte_exact(cluster: Cluster) -> None:
    from tests.k8s.test_control_plane import readme_example

    cluster.apply(workloads.namespace(SHOP, accelerate=True))
    cluster.kubectl("apply", "-f", "-", input=readme_example("direct-policy"))  # pods without a sidecar too
    cluster.apply(
        *workloads.server("plain", SHOP, mesh=False),
        *workloads.server("mesh", SHOP, mesh=True),
        workloads.client("client-plain", SHOP, mesh=False),
        workloads.client("client-mesh", SHOP, mesh=True),
    )
    names = ["plain", "mesh", "client-plain", "client-mesh"]
    wait_for(lambda: _all_ready(cluster, SHOP, names), "workloads Ready", 180)
    wanted = {f"{SHOP}/{_pod(cluster, SHOP, n)}" for n in names}
    wait_for(lambda: wanted <= set(_node_enrolment(cluster).get("status", {}).get("enrolledPods", [])),
             "all four pods enrolled", 90)  # fmt: skip
    before = cluster.agent_metrics()
    results = {}
    for client in ("client-plain", "client-mesh"):
        for server in ("plain", "mesh"):
            ip = _service_ip(cluster, SHOP, server)
            pod = _pod(cluster, SHOP, client)
            results[(client, server, "stream")] = cluster.traffic(
                SHOP, pod, "stream", "--host", ip, "--port", str(workloads.SINK_PORT), "--bytes", str(64 * MiB)
            )
            results[(client, server, "sizes")] = cluster.traffic(
                SHOP, pod, "sizes", "--host", ip, "--port", str(workloads.ECHO_PORT),
                "--sizes", "1,100,1500,65536,1048576,4194304")  # fmt: skip
    bad = {k: v for k, v in results.items() if not v.get("ok")}
    assert not bad, bad
    after = cluster.agent_metrics()
    # 4 streams of 64 MiB, each over 1 (plain) to 3 (through two sidecars) hops.
    assert _delta(before, after, "meshaccel_redirected_bytes_total") >= 4 * 64 * MiB
    assert _delta(before, after, "meshaccel_pairs_total") >= 8 * 2


def test_status_and_kubectl_get_meshaccel_show_it(cluster: Cluster) -> None:
    def counted() -> bool:
        ne = _node_enrolment(cluster)["status"]
        policy = cluster.get("accelerationpolicy", "default").get("status", {})
        return bool(ne["counters"]["bytesRedirected"] >= 4 * 64 * MiB and policy.get("acceleratedPods", 0) >= 2)

    wait_for(counted, "bytes redirected in the NodeEnrolment and policy status", 60)
    policy = cluster.get("accelerationpolicy", "default")["status"]
    assert policy["matchedPods"] == policy["acceleratedPods"] == 2  # the two sidecar pods
    assert cluster.get("accelerationpolicy", "direct-too")["status"]["acceleratedPods"] == 4
    listing = cluster.kubectl("get", "meshaccel", "-A")
    for name in ("accelerationpolicy.meshaccel.io/default", "nodeenrolment.meshaccel.io/",
                 "nodeagent.meshaccel.io/meshaccel-agent"):  # fmt: skip
        assert name in listing, listing


def test_helm_test_checks_the_install(cluster: Cluster) -> None:
    run_readme(cluster, "helm-test")


def test_kubectl_meshaccel_status_top_and_doctor_as_the_readme_says(cluster: Cluster) -> None:
    """The CLI as a kubectl plugin (found on PATH as kubectl-meshaccel): the
    README's "see it working" block as it stands, then each view's content;
    and `meshaccel doctor` where the agent runs (`kubectl exec`)."""
    run_readme(cluster, "see-it-working")
    node = cluster.get("nodes")["items"][0]["metadata"]["name"]
    status = cluster.plugin("status")
    assert "OK: acceleration works" in status and node in status, status
    assert status.startswith("NODE") and "meshaccel-system/meshaccel-agent" in status
    # Cluster-wide doctor: every agent asked through the API server's pod proxy.
    doctor = cluster.plugin("doctor", "--cluster")
    assert f"== node {node} (agent {NAMESPACE}/meshaccel-agent-" in doctor, doctor
    assert "[ok  ] kernel self-test: the agent's checks pass" in doctor and "[FAIL]" not in doctor, doctor
    assert doctor.rstrip().endswith("1 of 1 node(s) can accelerate"), doctor
    top = cluster.plugin("top", "--count", "2", "--interval", "0.5")
    assert "meshaccel top: every 0.5s" in top and "no answer" not in top, top
    assert re.search(rf"{re.escape(node)}\s+\d+\s+[\d.]+ [kMG]?bit/s", top), top
    inside = cluster.exec(NAMESPACE, _pod(cluster, NAMESPACE, "meshaccel-agent"), "agent",
                          "meshaccel", "doctor", "--cgroup", "/host/sys/fs/cgroup")  # fmt: skip
    assert "acceleration can work on this node" in inside, inside
    assert "[ok  ] kernel self-test: the agent's checks pass" in inside and "[FAIL]" not in inside, inside


def test_a_real_prometheus_evaluates_every_panel_and_alert(cluster: Cluster, tmp_path: Path) -> None:
    """Debian's Prometheus scrapes the agent and the operator pods the
    chart's PodMonitor selects, under live accelerated traffic;
    every dashboard query returns data, every alert rule evaluates without
    error on series that exist, and the dashboard is drawn from it."""
    board = json.loads(DASHBOARD.read_text())
    node = cluster.get("nodes")["items"][0]["metadata"]["name"]
    pod, ip = _pod(cluster, SHOP, "client-mesh"), _service_ip(cluster, SHOP, "mesh")
    with Prometheus(pod_targets(cluster.get("pods", namespace=NAMESPACE)["items"])) as prom:
        start = time.time()
        wait_for(lambda: prom.targets_up() == {"meshaccel-agent": True, "meshaccel-operator": True},
                 "agent and operator scraped", 60)  # fmt: skip
        # Live traffic for the picture: long echo connections and new
        # connections all along (the disruption checker), bursts of bulk.
        check = Disruption(cluster, pod, _service_ip(cluster, SHOP, "plain"), 60)
        for mib in (32, 128, 64, 256, 64, 16):
            result = cluster.traffic(SHOP, pod, "stream", "--host", ip, "--port", str(workloads.SINK_PORT),
                                     "--bytes", str(mib * MiB))  # fmt: skip
            assert result["ok"], result
            time.sleep(6)
        result = check.result()
        assert result["ok"] and result["failure_count"] == 0, result
        time.sleep(6)  # the last counters scraped twice more
        empty = [(title, e) for title, e in dashboard.queries(board) if not prom.query(grafana_to_promql(e))]
        assert not empty, f"dashboard queries that return nothing: {empty}"
        redirected = prom.query(f'sum(rate(meshaccel_redirected_bytes_total{{node="{node}"}}[1m]))')
        assert float(redirected[0]["value"][1]) > 0, "the dashboard would not show acceleration"
        (variable,) = [v for v in board["templating"]["list"] if v["name"] == "node"]
        match = variable["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        assert node in prom.api("label/node/values", **{"match[]": match}), "the node variable misses the node"
        for alert in alerts.ALERTS:
            prom.query(alert.expr)  # evaluates, or raises with Prometheus' error
            for metric in set(re.findall(r"\b(meshaccel_[a-z0-9_]+|up)\b", alert.expr)):
                assert prom.query(f"count({metric})"), f"{alert.name}: no series {metric} on a live cluster"
        wait_for(lambda: all(r.get("lastEvaluation", "").startswith("2") for r in _rules(prom)),
                 "every rule evaluated", 30)  # fmt: skip
        broken = {r["name"]: r.get("lastError") for r in _rules(prom) if r["health"] != "ok"}
        assert not broken, broken
        picture = Path(os.environ.get("MESHACCEL_DASHBOARD_PICTURE") or tmp_path / "dashboard.png")
        drawn = draw(board, prom, start, time.time(), picture)
        assert drawn >= len(dashboard.queries(board)) and picture.stat().st_size > 20_000, (drawn, picture)


def _rules(prom: Prometheus) -> list[dict[str, Any]]:
    return [rule for group in prom.api("rules")["groups"] for rule in group["rules"]]


def test_pods_meshaccel_must_not_touch_are_never_enrolled(cluster: Cluster) -> None:
    cluster.apply(
        workloads.namespace(OTHER, accelerate=False),
        workloads.client("unselected", OTHER, mesh=True),
        workloads.client("opted-out", SHOP, mesh=True, opt_out=True),
        workloads.client("host-network", SHOP, mesh=False, host_network=True),
    )
    wait_for(lambda: _all_ready(cluster, OTHER, ["unselected"]) and _all_ready(cluster, SHOP, ["opted-out",
             "host-network"]), "pods Ready", 120)  # fmt: skip
    ne = _node_enrolment(cluster)
    desired = {f"{p['namespace']}/{p['name']}" for p in ne["spec"]["pods"]}
    for pod in (f"{OTHER}/unselected", f"{SHOP}/opted-out", f"{SHOP}/host-network"):
        assert pod not in desired, f"{pod} was selected"
    ip = _service_ip(cluster, SHOP, "plain")
    for namespace, pod in ((OTHER, "unselected"), (SHOP, "opted-out"), (SHOP, "host-network")):
        before = cluster.agent_metrics()
        result = cluster.traffic(namespace, pod, "stream", "--host", ip, "--port", str(workloads.SINK_PORT),
                                 "--bytes", str(8 * MiB))  # fmt: skip
        assert result["ok"], (pod, result)
        after = cluster.agent_metrics()
        # The plain server is enrolled, its client is not: never paired.
        assert _delta(before, after, "meshaccel_pairs_total") == 0, pod


# -- restarts and upgrades under live traffic ----------------------------------


def test_rollout_restart_under_live_traffic(cluster: Cluster) -> None:
    check = Disruption(cluster, _pod(cluster, SHOP, "client-mesh"), _service_ip(cluster, SHOP, "mesh"), 40)
    old = {p["metadata"]["name"] for p in cluster.agent_pods()}
    cluster.kubectl("rollout", "restart", "daemonset/meshaccel-agent", "-n", NAMESPACE)
    cluster.kubectl("rollout", "status", "daemonset/meshaccel-agent", "-n", NAMESPACE, "--timeout=180s", timeout=200)
    result = check.result()
    assert result["ok"] and result["failure_count"] == 0, result
    assert result["new_connections"] > 100 and result["long_rounds"] > 100, result
    assert not old & {p["metadata"]["name"] for p in cluster.agent_pods()}, "the agent pod was not replaced"
    assert "datapath adopted" in _agent_log(cluster), "the new agent did not adopt the pinned datapath"
    assert _generations_on_node(cluster) == ["current"]


def test_helm_upgrade_to_a_new_agent_image_under_live_traffic(cluster: Cluster) -> None:
    new_image = AGENT_IMAGE + "-e2e"
    cluster.node.tag_image(AGENT_IMAGE, new_image)
    check = Disruption(cluster, _pod(cluster, SHOP, "client-mesh"), _service_ip(cluster, SHOP, "plain"), 40)
    cluster.helm("upgrade", "meshaccel", "charts/meshaccel", "-n", NAMESPACE, "--reuse-values",
                 "--set", f"agent.image.tag={new_image.rsplit(':', 1)[1]}", "--wait", "--timeout", "180s")  # fmt: skip
    _wait_agent_rolled(cluster, new_image)
    result = check.result()
    assert result["ok"] and result["failure_count"] == 0, result
    assert "datapath adopted" in _agent_log(cluster)
    assert _generations_on_node(cluster) == ["current"]


def test_degraded_agent_reports_why_and_the_rollout_completes(cluster: Cluster) -> None:
    """A NodeAgent pointing at a path that is no cgroup2 tree: the agent
    cannot attach, says so (NodeEnrolment condition, Event on its pod), and
    is Ready anyway (failing open), so `helm upgrade --wait` returns."""
    cluster.helm("upgrade", "meshaccel", "charts/meshaccel", "-n", NAMESPACE, "--reuse-values",
                 "--set", "agent.cgroupPath=/tmp", "--wait", "--timeout", "180s")  # fmt: skip
    degraded = wait_for(lambda: _condition(_node_enrolment(cluster), "Degraded").get("status") == "True"
                        and _condition(_node_enrolment(cluster), "Degraded"), "Degraded condition", 90)  # fmt: skip
    assert degraded["reason"] == "NoCgroup2", degraded
    pod = _pod(cluster, NAMESPACE, "meshaccel-agent")
    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={pod}",
                             "-o", "json")  # fmt: skip
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert "NoCgroup2" in reasons, reasons
    assert cluster.agent_metrics()["meshaccel_degraded{reason=NoCgroup2}"] == 1
    # Back to a working agent: it adopts the datapath that stayed pinned.
    cluster.helm("upgrade", "meshaccel", "charts/meshaccel", "-n", NAMESPACE, "--reuse-values",
                 "--set", "agent.cgroupPath=/sys/fs/cgroup", "--wait", "--timeout", "180s")  # fmt: skip
    wait_for(lambda: _condition(_node_enrolment(cluster), "Degraded").get("status") == "False", "not degraded", 90)
    ip = _service_ip(cluster, SHOP, "mesh")
    before = cluster.agent_metrics()
    result = cluster.traffic(SHOP, _pod(cluster, SHOP, "client-mesh"), "stream", "--host", ip, "--port",
                             str(workloads.SINK_PORT), "--bytes", str(16 * MiB))  # fmt: skip
    assert result["ok"], result
    assert _delta(before, cluster.agent_metrics(), "meshaccel_redirected_bytes_total") >= 16 * MiB


# -- uninstall -----------------------------------------------------------------


def test_helm_uninstall_leaves_nothing_and_connections_keep_working(cluster: Cluster) -> None:
    check = Disruption(cluster, _pod(cluster, SHOP, "client-mesh"), _service_ip(cluster, SHOP, "mesh"), 40)
    run_readme(cluster, "helm-uninstall")
    result = check.result()
    assert result["ok"] and result["failure_count"] == 0, result
    assert _generations_on_node(cluster) == [], "pins left on the node"
    assert cluster.node.meshaccel_sockops() == [], "a meshaccel program is still attached to the node's cgroup"
    for kind, name, ns in (("nodeagent", "meshaccel-agent", NAMESPACE), ("daemonset", "meshaccel-agent", NAMESPACE),
                           ("deployment", "meshaccel-operator", NAMESPACE)):  # fmt: skip
        assert not cluster.exists(kind, name, ns), f"{kind} {name} left"
    assert not cluster.get("nodeenrolments")["items"], "NodeEnrolments left"
    # New connections after the uninstall are plain TCP and work.
    ip = _service_ip(cluster, SHOP, "mesh")
    result = cluster.traffic(SHOP, _pod(cluster, SHOP, "client-mesh"), "stream", "--host", ip, "--port",
                             str(workloads.SINK_PORT), "--bytes", str(16 * MiB))  # fmt: skip
    assert result["ok"], result
