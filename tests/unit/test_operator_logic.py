"""The operator's decisions as plain functions: which pods, which shapes, which
status. (The same functions run inside kopf in tests/k8s.)"""

from __future__ import annotations

from typing import Any

import pytest

from meshaccel_api.conditions import set_condition
from meshaccel_api.v1alpha1 import (
    AccelerationPolicySpec,
    Condition,
    LabelSelector,
    NodeEnrolmentStatus,
    PortRange,
    Shape,
    TrafficCounters,
)
from meshaccel_operator.desired import node_enrolment, pod_facts
from meshaccel_operator.status import policy_status

pytestmark = pytest.mark.unit

OPTED_IN = {"meshaccel.io/accelerate": "enabled"}


def pod(
    name: str,
    ip: str = "10.244.0.5",
    node: str = "node-a",
    ns: str = "shop",
    sidecar: str | None = "container",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    phase: str = "Running",
    **spec: Any,
) -> dict[str, Any]:
    containers = [{"name": "app"}]
    init: list[dict[str, Any]] = []
    if sidecar == "container":
        containers.append({"name": "istio-proxy"})
    elif sidecar == "native":
        init.append({"name": "istio-proxy", "restartPolicy": "Always"})
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {"nodeName": node, "containers": containers, "initContainers": init, **spec},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def enrol(*pods: dict[str, Any], policies: list[AccelerationPolicySpec] | None = None, ns_labels: Any = None) -> Any:
    facts = [f for p in pods if (f := pod_facts(p)) is not None]
    namespaces = {"shop": OPTED_IN if ns_labels is None else ns_labels, "other": {}}
    return node_enrolment(facts, namespaces, policies if policies is not None else [AccelerationPolicySpec()])


def names(spec: Any) -> list[str]:
    return [p.name for p in spec.pods]


def test_default_policy_takes_sidecar_pods_of_opted_in_namespaces() -> None:
    spec = enrol(pod("a", "10.244.0.5"), pod("b", "10.244.0.6", sidecar=None), pod("c", "10.244.0.7", ns="other"))
    assert names(spec) == ["a"]
    assert spec.pods[0].shapes == ["direct", "sidecar"]
    assert spec.pods[0].ips == ["10.244.0.5"]


def test_native_sidecar_and_injector_annotation_count_as_sidecar() -> None:
    spec = enrol(
        pod("native", "10.244.0.5", sidecar="native"),
        pod("annotated", "10.244.0.6", sidecar=None, annotations={"sidecar.istio.io/status": "{}"}),
    )
    assert names(spec) == ["annotated", "native"]


@pytest.mark.parametrize("where", ["labels", "annotations"])
def test_opt_out_wins_over_every_policy(where: str) -> None:
    everything = AccelerationPolicySpec(namespaceSelector=LabelSelector(), requireSidecar=False)
    p = pod("a", **{where: {"meshaccel.io/accelerate": "disabled"}})  # type: ignore[arg-type]
    assert names(enrol(p, policies=[AccelerationPolicySpec(), everything])) == []


def test_not_running_host_network_unbound_and_terminating_pods_are_left_out() -> None:
    terminating = pod("d", "10.244.0.8")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    unbound = pod("e", "10.244.0.9")
    del unbound["spec"]["nodeName"]
    spec = enrol(pod("a", phase="Pending"), pod("b", "10.244.0.6", hostNetwork=True), terminating, unbound)
    assert names(spec) == []
    assert pod_facts(unbound) is None


def test_policies_union_shapes_and_exclusions() -> None:
    direct_only = AccelerationPolicySpec(shapes=[Shape.DIRECT], excludedPorts=[PortRange(port=9000, endPort=9010)])
    sidecar_only = AccelerationPolicySpec(shapes=[Shape.SIDECAR], excludedPorts=[PortRange(port=9005, endPort=9020)])
    spec = enrol(pod("a"), policies=[direct_only, sidecar_only])
    assert spec.pods[0].shapes == ["direct", "sidecar"]
    assert [(r.port, r.endPort) for r in spec.pods[0].excludedPorts] == [(9000, 9020)]


def test_sidecar_shape_is_dropped_for_pods_without_sidecar() -> None:
    policy = AccelerationPolicySpec(requireSidecar=False)
    spec = enrol(pod("plain", sidecar=None), policies=[policy])
    assert spec.pods[0].shapes == ["direct"]


def test_disabled_policy_and_selectors() -> None:
    off = AccelerationPolicySpec(enabled=False)
    assert names(enrol(pod("a"), policies=[off])) == []
    by_label = AccelerationPolicySpec.model_validate(
        {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}}
    )
    spec = enrol(
        pod("web", "10.244.0.5", labels={"tier": "web"}),
        pod("db", "10.244.0.6", labels={"tier": "db"}),
        policies=[by_label],
    )
    assert names(spec) == ["web"]


def test_an_ip_claimed_by_two_pods_enrols_neither() -> None:
    spec = enrol(pod("old", "10.244.0.5"), pod("new", "10.244.0.5"), pod("c", "10.244.0.7"))
    assert names(spec) == ["c"]


def test_output_is_canonical() -> None:
    a, b = pod("a", "10.244.0.5"), pod("b", "10.244.0.6")
    assert enrol(a, b) == enrol(b, a)


def test_condition_transition_time_moves_only_on_flips() -> None:
    c = set_condition([], "Ready", "True", "Ok", "", 1, "2026-01-01T00:00:00Z")
    c = set_condition(c, "Ready", "True", "Ok", "again", 2, "2026-01-02T00:00:00Z")
    assert c[0].lastTransitionTime == "2026-01-01T00:00:00Z" and c[0].observedGeneration == 2
    c = set_condition(c, "Ready", "False", "Broken", "", 2, "2026-01-03T00:00:00Z")
    assert c[0].lastTransitionTime == "2026-01-03T00:00:00Z"


def _ready(ok: bool) -> list[Condition]:
    return set_condition([], "Ready", "True" if ok else "False", "X", "", 1, "2026-01-01T00:00:00Z")


def test_policy_status_counts_and_conditions() -> None:
    facts = [
        f
        for p in (pod("a", node="n1"), pod("b", "10.244.1.5", node="n2"), pod("c", sidecar=None))
        if (f := pod_facts(p))
    ]
    nodes = {
        "n1": NodeEnrolmentStatus(
            enrolledPods=["shop/a"], counters=TrafficCounters(bytesRedirected=10), conditions=_ready(True)
        ),
        "n2": NodeEnrolmentStatus(
            enrolledPods=[], counters=TrafficCounters(bytesRedirected=5), conditions=_ready(False)
        ),
    }
    st = policy_status(AccelerationPolicySpec(), 3, facts, {"shop": OPTED_IN}, nodes, None, "2026-01-01T00:00:00Z")
    assert (st.matchedPods, st.acceleratedPods, st.nodes, st.nodesReady) == (2, 1, 2, 1)
    assert st.counters.bytesRedirected == 15
    assert st.observedGeneration == 3
    (ready,) = st.conditions
    assert (ready.status, ready.reason) == ("False", "NodesNotReady") and "n2" in ready.message
    nodes["n2"] = NodeEnrolmentStatus(enrolledPods=["shop/b"], conditions=_ready(True))
    st = policy_status(AccelerationPolicySpec(), 3, facts, {"shop": OPTED_IN}, nodes, st, "2026-01-01T00:00:09Z")
    assert (st.conditions[0].status, st.conditions[0].reason) == ("True", "Accelerating")
