"""Status of policies (aggregated from the node agents' reports) and of
NodeAgents (from their DaemonSet): pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshaccel_api.conditions import condition_status, set_condition
from meshaccel_api.v1alpha1 import (
    AccelerationPolicySpec,
    AccelerationPolicyStatus,
    ConditionStatus,
    NodeAgentStatus,
    NodeEnrolmentStatus,
    TrafficCounters,
)
from meshaccel_operator.desired import PodFacts, eligible, selects


def _summary(names: Iterable[str], limit: int = 5) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def policy_status(
    spec: AccelerationPolicySpec,
    generation: int,
    pods: Iterable[PodFacts],
    namespaces: Mapping[str, Mapping[str, str]],
    nodes: Mapping[str, NodeEnrolmentStatus | None],
    previous: AccelerationPolicyStatus | None,
    now: str,
) -> AccelerationPolicyStatus:
    """What a policy's status should say, from the pods it selects and what
    the agents of their nodes report."""
    matched = [p for p in pods if eligible(p) and selects(spec, p, namespaces.get(p.namespace))]
    covered = {p.node for p in matched}
    enrolled = {name for node in covered if (status := nodes.get(node)) is not None for name in status.enrolledPods}
    accelerated = sum(1 for p in matched if p.key in enrolled)
    ready = {
        n for n in covered if (s := nodes.get(n)) is not None and condition_status(s.conditions, "Ready") == "True"
    }
    counters = TrafficCounters()
    for node in sorted(covered):
        status = nodes.get(node)
        if status is not None:
            counters = counters + status.counters

    if not spec.enabled:
        verdict: tuple[ConditionStatus, str, str] = ("True", "Disabled", "the policy is switched off (spec.enabled)")
    elif not matched:
        verdict = ("True", "NoPodsSelected", "no running pod matches the selectors")
    elif covered - ready:
        verdict = ("False", "NodesNotReady", f"agent not ready on {_summary(covered - ready)}")
    elif accelerated < len(matched):
        waiting = [p.key for p in matched if p.key not in enrolled]
        verdict = ("False", "PodsPending", f"not enrolled yet: {_summary(waiting)}")
    else:
        verdict = ("True", "Accelerating", f"{accelerated} pod(s) on {len(covered)} node(s)")
    conditions = set_condition(previous.conditions if previous else [], "Ready", *verdict, generation, now)
    return AccelerationPolicyStatus(
        observedGeneration=generation,
        conditions=conditions,
        matchedPods=len(matched),
        acceleratedPods=accelerated,
        nodes=len(covered),
        nodesReady=len(ready),
        counters=counters,
    )


def nodeagent_status(
    daemonset: str, generation: int, ds_status: dict[str, Any], previous: NodeAgentStatus | None, now: str
) -> NodeAgentStatus:
    """A NodeAgent's status from its DaemonSet's status."""
    desired, ready = int(ds_status.get("desiredNumberScheduled", 0)), int(ds_status.get("numberReady", 0))
    available = desired > 0 and ready == desired
    conditions = set_condition(
        previous.conditions if previous else [],
        "Available",
        "True" if available else "False",
        "AllAgentsReady" if available else ("NoNodes" if desired == 0 else "AgentsNotReady"),
        f"{ready}/{desired} agents ready",
        generation,
        now,
    )
    return NodeAgentStatus(
        observedGeneration=generation,
        daemonSet=daemonset,
        nodesDesired=desired,
        nodesReady=ready,
        conditions=conditions,
    )
