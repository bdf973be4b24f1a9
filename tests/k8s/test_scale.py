"""The scale benchmark's phases at a small size (bench/k8s_scale.py runs them
at 100 nodes x 10,000 pods and checks the speed targets; this checks that the
operator is exactly right after each phase, and silent while idle).

The API server is the session's, shared with the other k8s modules: this
module's nodes and namespaces carry a random prefix, it starts its own
operator, and it removes its pods (and so its node objects) at the end.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace

import pytest

from meshaccel_api.v1alpha1 import GROUP, VERSION, AccelerationPolicy
from meshaccel_lab.kube import KubeAPI
from meshaccel_lab.scale import Plan, ScaleRun

SMALL = Plan(nodes=10, pods_per_node=30, churn=30, deletes=10, burst=30, rate=50, idle_seconds=3,
             threads=8, status_interval=1.0, timeout=30, cold_timeout=60)  # fmt: skip


def _only_the_default_policy(kube: KubeAPI) -> None:
    """The expectation is what the `default` policy (spec: {}) calls for. An
    earlier module may have left another policy behind if one of its tests
    failed; its operator is gone by now, so removing the policy is harmless."""
    from kubernetes import client

    custom = client.CustomObjectsApi(kube.api_client())
    for item in custom.list_cluster_custom_object(GROUP, VERSION, AccelerationPolicy.plural)["items"]:
        if item["metadata"]["name"] != "default":
            custom.delete_cluster_custom_object(GROUP, VERSION, AccelerationPolicy.plural, item["metadata"]["name"])


@pytest.fixture
def scale(kube: KubeAPI) -> Iterator[ScaleRun]:
    # A prefix of its own: the module may run twice against one API server.
    run = ScaleRun(kube, replace(SMALL, prefix=f"scale-{secrets.token_hex(2)}-"))
    try:
        run.prepare()
        _only_the_default_policy(kube)
        yield run
        run.remove_all()  # on success only: after a failure the objects help to debug
    finally:
        if run.operator is not None:
            print(run.operator.log()[-4000:])
        run.close()


def test_every_node_object_is_exact_through_cold_start_churn_and_idle(scale: ScaleRun) -> None:
    populated = scale.populate()
    assert populated["pods"] == 300 and populated["enrolled"] == 240

    # Cold start on a full cluster. A previous module's operator may still
    # hold the Lease for up to its 15 s duration: start() waits for /healthz,
    # which kopf serves only once this operator has taken the Lease.
    cold = scale.start_operator(start_timeout=60)  # waits until every node object is exact, then lists them
    # Nothing is written once every object is exact: neither counted by the
    # operator (even a write that changes nothing) nor seen by the API server.
    assert cold["writes"] == cold["writes_2s_later"], cold
    assert cold["api_changes"] == cold["api_changes_2s_later"], cold
    assert cold["writes"] >= 10  # at least one create per node of this run (other modules' nodes are in sync)

    churn = scale.churn()  # ends with every node object exact again
    assert churn["writes_for_unready_creates"] == 0, "pods that are not Running yet changed a node object"
    assert churn["latency"]["n"] == 30 and churn["writes"] >= 10

    deletes = scale.delete_some()  # terminating pods leave their node objects
    assert deletes["latency"]["n"] == 10

    burst = scale.burst()
    assert burst["writes_for_unready_creates"] == 0
    assert burst["latency"]["n"] == 30

    idle = scale.idle()
    assert idle["node_writes"] == 0, idle
    assert idle["resource_version_changes"] == 0 and idle["watch_events"] == 0, idle
    assert idle["policy_status_writes"] == 0, idle
    assert scale.watch is not None
    assert not scale.watch.errors, scale.watch.errors
