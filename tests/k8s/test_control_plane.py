"""The operator against a real kube-apiserver: CRDs, node objects, the agent
DaemonSet, policy status, RBAC, and surviving API server restarts and 410s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshaccel_api.agent_settings import AgentSettings
from meshaccel_api.agent_settings import parse as parse_agent
from meshaccel_lab.controlplane import (
    OperatorProcess,
    agent_kubeconfig,
    create_running_pod,
    get_json,
    install,
    pod_manifest,
)
from meshaccel_lab.kube import KubeAPI
from meshaccel_lab.topology import wait_for
from meshaccel_operator.deploy import NAMESPACE

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def operator(kube: KubeAPI) -> Iterator[OperatorProcess]:
    install(kube)
    op = OperatorProcess(kube)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(op.log()[-4000:])


def node_pods(kube: KubeAPI, node: str) -> list[str]:
    try:
        obj = get_json(kube, "nodeenrolment", node)
    except Exception:
        return []
    return sorted(f"{p['namespace']}/{p['name']}" for p in obj["spec"].get("pods", []))


def eventually(kube: KubeAPI, node: str, expected: list[str], timeout: float = 15) -> None:
    wait_for(lambda: node_pods(kube, node) == expected, timeout, f"NodeEnrolment {node} == {expected}")


def readme_example(name: str) -> str:
    """A YAML example from the README, marked <!-- example: NAME -->."""
    text = README.read_text()
    start = text.index(f"<!-- example: {name} -->")
    body = text[text.index("```yaml\n", start) + 8 :]
    return body[: body.index("```")]


# --- the API ---------------------------------------------------------------------


BAD = [
    (
        "excludedPorts:\n    - port: 9000\n      endPort: 8000",
        "spec.excludedPorts[0].endPort: Invalid value",
        "endPort must not be below port",
    ),
    ("excludedPorts:\n    - port: 1\n      endPort: 5000", "spec.excludedPorts[0].endPort", "at most 1024 ports"),
    ("excludedPorts:\n    - port: 70000", "spec.excludedPorts[0].port", "less than or equal to 65535"),
    ("requireSidecar: false\n  shapes: [sidecar]", "spec.shapes", "must include 'direct'"),
    ("shapes: [direct, teleport]", "spec.shapes[1]", "Unsupported value"),
    ("shapes: []", "spec.shapes", "at least 1 item"),
    (
        "podSelector:\n    matchExpressions:\n    - {key: app, operator: In}",
        "spec.podSelector.matchExpressions[0]",
        "values must be non-empty for In and NotIn",
    ),
    (
        "podSelector:\n    matchExpressions:\n    - {key: app, operator: Exists, values: [x]}",
        "spec.podSelector.matchExpressions[0]",
        "empty for Exists",
    ),
    ("namespaceSelector:\n    matchLabels: {'bad key!': x}", "spec.namespaceSelector.matchLabels", "valid label keys"),
    ("enabled: yes-please", "spec.enabled", "must be of type boolean"),
]


@pytest.mark.parametrize(("spec", "field", "message"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_policy_is_rejected_naming_the_field(
    kube: KubeAPI, operator: OperatorProcess, spec: str, field: str, message: str
) -> None:
    doc = f"apiVersion: meshaccel.io/v1alpha1\nkind: AccelerationPolicy\nmetadata:\n  name: bad\nspec:\n  {spec}\n"
    res = kube.kubectl("apply", "-f", "-", input=doc, check=False)
    assert res.returncode != 0, "the API server accepted a bad policy"
    assert field in res.stderr and message in res.stderr, res.stderr


def test_bad_node_agent_is_rejected(kube: KubeAPI, operator: OperatorProcess) -> None:
    doc = (
        "apiVersion: meshaccel.io/v1alpha1\nkind: NodeAgent\nmetadata: {name: bad, namespace: meshaccel-system}\n"
        "spec:\n  mapSizes: {sockhash: 65536, pairs: 1024}\n  tolerations: [{operator: Exists, value: x}]\n"
    )
    res = kube.kubectl("apply", "-f", "-", input=doc, check=False)
    assert res.returncode != 0
    assert "spec.mapSizes.pairs" in res.stderr and "at least sockhash / 2" in res.stderr, res.stderr
    assert "spec.tolerations[0].value" in res.stderr, res.stderr


def test_operator_exports_its_build_and_leadership(kube: KubeAPI, operator: OperatorProcess) -> None:
    """Before test_one_leader_at_a_time, which stops this operator."""
    metrics = operator.metrics()
    build = [k for k in metrics if k.startswith("meshaccel_build_info{")]
    assert len(build) == 1 and 'component="operator"' in build[0] and 'version="0.1.0"' in build[0], build
    assert metrics["meshaccel_operator_leader"] == 1, "the only replica holds the lease"


def test_defaults_are_applied_by_the_api_server(kube: KubeAPI, operator: OperatorProcess) -> None:
    kube.kubectl("apply", "-f", "-", input=readme_example("default-policy"))
    spec = get_json(kube, "accelerationpolicy", "default")["spec"]
    assert spec["namespaceSelector"]["matchLabels"] == {"meshaccel.io/accelerate": "enabled"}
    assert spec["shapes"] == ["direct", "sidecar"] and spec["requireSidecar"] is True and spec["enabled"] is True


# --- the operator ------------------------------------------------------------------


def test_node_objects_follow_pods_policies_and_opt_outs(kube: KubeAPI, operator: OperatorProcess) -> None:
    kube.kubectl("apply", "-f", "-", input=readme_example("default-policy"))
    kube.ensure_namespace("shop", {"meshaccel.io/accelerate": "enabled"})
    kube.ensure_namespace("plain")
    create_running_pod(kube, pod_manifest("web", "shop", "node-a"), "10.244.1.10")
    create_running_pod(kube, pod_manifest("db", "shop", "node-b"), "10.244.2.10")
    create_running_pod(kube, pod_manifest("nosidecar", "shop", "node-a", sidecar=False), "10.244.1.11")
    create_running_pod(kube, pod_manifest("elsewhere", "plain", "node-a"), "10.244.1.12")
    eventually(kube, "node-a", ["shop/web"])
    eventually(kube, "node-b", ["shop/db"])
    web = get_json(kube, "nodeenrolment", "node-a")["spec"]["pods"][0]
    assert web["ips"] == ["10.244.1.10"] and web["shapes"] == ["direct", "sidecar"] and web["uid"]

    # Opting a namespace in, a pod out, and a second policy.
    kube.kubectl("label", "ns", "plain", "meshaccel.io/accelerate=enabled")
    eventually(kube, "node-a", ["plain/elsewhere", "shop/web"])
    kube.kubectl("annotate", "pod", "web", "-n", "shop", "meshaccel.io/accelerate=disabled")
    eventually(kube, "node-a", ["plain/elsewhere"])
    kube.kubectl("apply", "-f", "-", input=readme_example("direct-policy"))
    eventually(kube, "node-a", ["plain/elsewhere", "shop/nosidecar"])
    pods = get_json(kube, "nodeenrolment", "node-a")["spec"]["pods"]
    plain = next(p for p in pods if p["name"] == "nosidecar")
    assert plain["shapes"] == ["direct"]
    assert plain["excludedPorts"] == [{"port": 5432}, {"port": 9090, "endPort": 9099}]

    # A deleted pod leaves its node object; a hand-edited spec is repaired.
    kube.kubectl("delete", "pod", "elsewhere", "-n", "plain", "--wait=false")
    eventually(kube, "node-a", ["shop/nosidecar"])
    kube.kubectl("patch", "nodeenrolment", "node-a", "--type=merge", "-p", '{"spec":{"pods":[]}}')
    eventually(kube, "node-a", ["shop/nosidecar"])
    kube.kubectl("delete", "accelerationpolicy", "direct-too")
    eventually(kube, "node-a", [])


def test_no_write_when_nothing_changed(kube: KubeAPI, operator: OperatorProcess) -> None:
    kube.ensure_namespace("quiet", {"meshaccel.io/accelerate": "enabled"})
    create_running_pod(kube, pod_manifest("q1", "quiet", "node-q"), "10.244.9.10")
    eventually(kube, "node-q", ["quiet/q1"])
    time.sleep(1)
    writes = operator.writes()
    version = get_json(kube, "nodeenrolment", "node-q")["metadata"]["resourceVersion"]
    # Events that do not change any node's enrolment.
    kube.kubectl("label", "pod", "q1", "-n", "quiet", "unrelated=1")
    kube.kubectl("annotate", "ns", "quiet", "touched=1")
    kube.kubectl("label", "ns", "quiet", "team=payments")
    create_running_pod(kube, pod_manifest("batch", "quiet", "node-q", sidecar=False), "10.244.9.11")
    time.sleep(2)
    assert operator.writes() == writes
    assert get_json(kube, "nodeenrolment", "node-q")["metadata"]["resourceVersion"] == version


def test_policy_status_aggregates_agent_reports(kube: KubeAPI, operator: OperatorProcess) -> None:
    kube.kubectl("apply", "-f", "-", input=readme_example("default-policy"))
    kube.ensure_namespace("agg", {"meshaccel.io/accelerate": "enabled"})
    create_running_pod(kube, pod_manifest("s1", "agg", "node-s"), "10.244.5.10")
    eventually(kube, "node-s", ["agg/s1"])
    # What the node's agent would report (with the agent's own credentials).
    agent = agent_kubeconfig(kube, "node-s")
    status = {
        "status": {
            "enrolledPods": ["agg/s1"],
            "podsDesired": 1,
            "podsEnrolled": 1,
            "datapathAttached": True,
            "counters": {"socketsEnrolled": 4, "bytesRedirected": 1000},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Enrolled", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        }
    }  # fmt: skip
    kube.kubectl("patch", "nodeenrolment", "node-s", "--subresource=status", "--type=merge", "-p",
                 json.dumps(status), kubeconfig=agent)  # fmt: skip

    def default_status() -> dict[str, Any]:
        return dict(get_json(kube, "accelerationpolicy", "default").get("status") or {})

    wait_for(lambda: default_status().get("acceleratedPods", 0) >= 1, 15, "policy status to count agg/s1")
    st = default_status()
    assert st["counters"]["bytesRedirected"] >= 1000 and st["observedGeneration"] >= 1
    table = kube.kubectl("get", "accelerationpolicies").stdout
    assert table.split()[:7] == ["NAME", "ENABLED", "MATCHED", "ACCELERATED", "NODES", "READY", "AGE"]
    table = kube.kubectl("get", "nodeenrolments", "node-s").stdout
    header, row = table.splitlines()
    assert header.split() == ["NAME", "DESIRED", "ENROLLED", "SOCKETS", "ATTACHED", "READY", "AGE"]
    assert row.split()[:6] == ["node-s", "1", "1", "4", "true", "True"]
    assert "nodeenrolment.meshaccel.io/node-s" in kube.kubectl("get", "meshaccel").stdout


def test_meshaccel_status_reads_what_the_agent_and_operator_wrote(kube: KubeAPI, operator: OperatorProcess) -> None:
    """`meshaccel status` on the objects the previous test had the operator
    and an agent write: node-s is shown as reported; the nodes no agent has
    reported on, and the missing NodeAgent, are named as problems."""
    meshaccel = os.path.join(os.path.dirname(sys.executable), "meshaccel")
    res = subprocess.run([meshaccel, "status", "--kubeconfig", str(kube.admin_kubeconfig), "-o", "json"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    data = json.loads(res.stdout)
    (node,) = [n for n in data["nodes"] if n["node"] == "node-s"]
    assert node["attached"] is True and node["pods"] == "1/1" and node["sockets"] == 4, node
    assert node["bytes_redirected"] == 1000 and node["ready"] == "True (Enrolled)", node
    assert res.returncode == 1 and data["ok"] is False
    assert any(p.startswith("no NodeAgent") for p in data["problems"]), data["problems"]
    assert not [p for p in data["problems"] if "node-s" in p], data["problems"]
    table = subprocess.run([meshaccel, "status", "--kubeconfig", str(kube.admin_kubeconfig)],
                           capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    assert table.startswith("NODE") and "PROBLEMS:" in table and "default" in table


def parse_agent_args(args: list[str]) -> AgentSettings:
    """As the agent's container would: NODE_NAME comes from the downward API."""
    import os

    os.environ["NODE_NAME"] = "node-from-downward-api"
    try:
        return parse_agent(args)
    finally:
        del os.environ["NODE_NAME"]


def test_agent_daemonset_lifecycle(kube: KubeAPI, operator: OperatorProcess) -> None:
    kube.kubectl("apply", "-f", "-", input=readme_example("node-agent"))

    def ds() -> dict[str, Any] | None:
        res = kube.kubectl("get", "ds", "meshaccel-agent", "-n", NAMESPACE, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    wait_for(lambda: ds() is not None, 30, "the agent DaemonSet")
    pod_spec = ds()["spec"]["template"]["spec"]  # type: ignore[index]
    agent = pod_spec["containers"][0]
    assert agent["image"] == "registry.example.com/meshaccel/agent:0.1.0"
    # The arguments the API server stored, read by the agent's own parser.
    assert agent["command"] == ["meshaccel-agent"]
    settings = parse_agent_args(agent["args"])
    assert settings.mode == "kubernetes" and settings.map_sizes.sockhash == 131072 and settings.map_sizes.netns == 4096
    assert settings.daemonset == "meshaccel-agent" and settings.cgroup == settings.pod_cgroup_root
    assert agent["securityContext"]["privileged"] is False and "BPF" in agent["securityContext"]["capabilities"]["add"]
    assert pod_spec["serviceAccountName"] == "meshaccel-agent" and pod_spec["hostPID"] is True
    host_volumes = {v["name"] for v in pod_spec["volumes"] if "hostPath" in v}
    writable = [m["name"] for m in agent["volumeMounts"] if m["name"] in host_volumes and not m.get("readOnly")]
    # Pins outlive the pod in bpffs; the self-test makes a private child of
    # the agent's own cgroup. Nothing else of the host is writable.
    assert writable == ["bpffs", "cgroup"], "only bpffs and the cgroup tree may be writable host paths"

    kube.kubectl("patch", "nodeagent", "meshaccel-agent", "-n", NAMESPACE, "--type=merge",
                 "-p", '{"spec":{"logLevel":"debug"}}')  # fmt: skip

    def log_level() -> str:
        current = ds()
        assert current is not None
        return parse_agent_args(current["spec"]["template"]["spec"]["containers"][0]["args"]).log_level

    wait_for(lambda: log_level() == "debug", 30, "update")

    # A rollout (no kubelets here: the DaemonSet controller's status by hand).
    kube.kubectl("patch", "ds", "meshaccel-agent", "-n", NAMESPACE, "--subresource=status", "--type=merge", "-p",
                 '{"status":{"desiredNumberScheduled":2,"numberReady":2,"currentNumberScheduled":2,'
                 '"numberMisscheduled":0}}')  # fmt: skip

    def available() -> str:
        st = get_json(kube, "nodeagent", "meshaccel-agent", "-n", NAMESPACE).get("status") or {}
        return next((c["status"] for c in st.get("conditions", []) if c["type"] == "Available"), "")

    wait_for(lambda: available() == "True", 30, "NodeAgent Available")

    # Someone deletes the DaemonSet: the operator puts it back.
    uid = ds()["metadata"]["uid"]  # type: ignore[index]
    kube.kubectl("delete", "ds", "meshaccel-agent", "-n", NAMESPACE)
    wait_for(lambda: (d := ds()) is not None and d["metadata"]["uid"] != uid, 30, "the DaemonSet recreated")

    # Uninstall: the NodeAgent goes at once (no finalizer, so no operator is
    # needed for it, e.g. during `helm uninstall`); the DaemonSet is its
    # dependent, which the garbage collector deletes (no controller-manager
    # runs here: tests/e2e proves it on a real node).
    owner = ds()["metadata"]["ownerReferences"]  # type: ignore[index]
    agent_uid = get_json(kube, "nodeagent", "meshaccel-agent", "-n", NAMESPACE)["metadata"]["uid"]
    assert owner == [{"apiVersion": "meshaccel.io/v1alpha1", "kind": "NodeAgent", "name": "meshaccel-agent",
                      "uid": agent_uid, "controller": True}]  # fmt: skip
    assert not get_json(kube, "nodeagent", "meshaccel-agent", "-n", NAMESPACE)["metadata"].get("finalizers")
    kube.kubectl("delete", "nodeagent", "meshaccel-agent", "-n", NAMESPACE, "--timeout=30s")


# --- RBAC ------------------------------------------------------------------------------


def test_agent_rbac_is_confined_to_its_own_node(kube: KubeAPI, operator: OperatorProcess) -> None:
    kube.ensure_namespace("rb", {"meshaccel.io/accelerate": "enabled"})
    create_running_pod(kube, pod_manifest("x", "rb", "node-r1"), "10.244.7.10")
    create_running_pod(kube, pod_manifest("y", "rb", "node-r2"), "10.244.8.10")
    eventually(kube, "node-r1", ["rb/x"])
    eventually(kube, "node-r2", ["rb/y"])
    me = agent_kubeconfig(kube, "node-r1")
    whoami = json.loads(kube.kubectl("auth", "whoami", "-o", "json", kubeconfig=me).stdout)
    assert whoami["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"] == ["node-r1"]

    def as_agent(*args: str) -> Any:
        return kube.kubectl(*args, kubeconfig=me, check=False)

    status = '{"status":{"podsEnrolled":1}}'
    ok = as_agent("patch", "nodeenrolment", "node-r1", "--subresource=status", "--type=merge", "-p", status)
    assert ok.returncode == 0, ok.stderr
    other = as_agent("patch", "nodeenrolment", "node-r2", "--subresource=status", "--type=merge", "-p", status)
    assert other.returncode != 0 and "only its own node" in other.stderr, other.stderr
    spec = as_agent("patch", "nodeenrolment", "node-r1", "--type=merge", "-p", '{"spec":{"pods":[]}}')
    assert spec.returncode != 0 and "forbidden" in spec.stderr.lower()
    for verb in (["get", "secrets", "-A"], ["get", "pods", "-A"], ["create", "namespace", "evil"],
                 ["delete", "nodeenrolment", "node-r2"], ["get", "accelerationpolicies"]):  # fmt: skip
        res = as_agent(*verb)
        assert res.returncode != 0 and "forbidden" in res.stderr.lower(), (verb, res.stderr)
    assert as_agent("get", "nodeenrolment", "node-r1").returncode == 0
    # Its own DaemonSet by name (restart or uninstall?), nothing else.
    assert "forbidden" not in as_agent("get", "ds", "meshaccel-agent", "-n", NAMESPACE).stderr.lower()
    assert "forbidden" in as_agent("get", "ds", "-n", NAMESPACE).stderr.lower()
    assert "forbidden" in as_agent("get", "ds", "other", "-n", NAMESPACE).stderr.lower()
    can = as_agent("auth", "can-i", "--list").stdout
    assert "secrets" not in can


# --- resilience -----------------------------------------------------------------------


def test_operator_survives_api_server_restart_and_watch_expiry(kube: KubeAPI, operator: OperatorProcess) -> None:
    kube.ensure_namespace("res", {"meshaccel.io/accelerate": "enabled"})
    create_running_pod(kube, pod_manifest("r1", "res", "node-x"), "10.244.6.10")
    eventually(kube, "node-x", ["res/r1"])
    before = operator.writes()

    kube.restart_apiserver()
    create_running_pod(kube, pod_manifest("r2", "res", "node-x"), "10.244.6.11")
    eventually(kube, "node-x", ["res/r1", "res/r2"], timeout=30)

    # Compaction: the operator's watches resume from versions that no longer
    # exist (410 Gone) and must re-list without losing or rewriting anything.
    kube.restart_apiserver(compact=True)
    create_running_pod(kube, pod_manifest("r3", "res", "node-x"), "10.244.6.12")
    eventually(kube, "node-x", ["res/r1", "res/r2", "res/r3"], timeout=30)
    assert operator.alive(), operator.log()[-3000:]
    # Exactly the two real changes were written; the re-lists wrote nothing.
    assert operator.writes() - before == 2


def test_one_leader_at_a_time(kube: KubeAPI, operator: OperatorProcess) -> None:
    """A second instance waits for the Lease and writes nothing; when the
    leader stops (and releases the Lease) it takes over at once. Runs last:
    it stops the module's operator."""
    kube.ensure_namespace("lead", {"meshaccel.io/accelerate": "enabled"})
    second = OperatorProcess(kube)
    try:
        with pytest.raises(TimeoutError):
            second.start(timeout=4)  # kopf (and its /healthz) starts only once leader
        assert second.alive(), second.log()[-2000:]
        holder = get_json(kube, "lease", "meshaccel-operator", "-n", NAMESPACE)["spec"]["holderIdentity"]
        assert holder.endswith(f"-{operator.proc.pid}")  # type: ignore[union-attr]
        operator.stop()
        wait_for(second.healthy, 15, "the second instance to take over")
        create_running_pod(kube, pod_manifest("l1", "lead", "node-l"), "10.244.11.10")
        eventually(kube, "node-l", ["lead/l1"])
    finally:
        second.stop()
