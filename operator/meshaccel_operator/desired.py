"""What each node should enrol: pure functions of pods, namespaces and policies.

No I/O and no kopf here, so every rule (sidecar detection, opt-out, policy
union) is a plain function with unit tests; the kopf handlers only feed these
with facts taken from watch events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshaccel_api.v1alpha1 import (
    ACCELERATE_LABEL,
    DISABLED,
    AccelerationPolicySpec,
    EnrolledPod,
    NodeEnrolmentSpec,
    PortRange,
    Shape,
)

#: Istio's proxy container, as injected (regular container) or as a native
#: sidecar (init container with restartPolicy: Always, Kubernetes 1.29+).
SIDECAR_CONTAINER = "istio-proxy"
#: Set by Istio's injector on every injected pod.
SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status"


@dataclass(frozen=True)
class PodFacts:
    """The few things about a pod that enrolment depends on (kept in memory
    for every pod of the cluster, so deliberately small)."""

    namespace: str
    name: str
    uid: str
    node: str
    ips: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    has_sidecar: bool
    opted_out: bool
    host_network: bool
    running: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def pod_facts(pod: Mapping[str, Any]) -> PodFacts | None:
    """Facts of a pod object, or None if it is not bound to a node yet."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    node = spec.get("nodeName")
    if not node:
        return None
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    containers = [c.get("name") for c in spec.get("containers") or []]
    native_sidecars = [c.get("name") for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    ips = tuple(sorted({entry["ip"] for entry in status.get("podIPs") or [] if "." in entry.get("ip", "")}))
    if not ips and "." in (status.get("podIP") or ""):
        ips = (status["podIP"],)
    return PodFacts(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        node=node,
        ips=ips,
        labels=tuple(sorted(labels.items())),
        has_sidecar=SIDECAR_CONTAINER in containers + native_sidecars or SIDECAR_STATUS_ANNOTATION in annotations,
        opted_out=DISABLED in (labels.get(ACCELERATE_LABEL), annotations.get(ACCELERATE_LABEL)),
        host_network=bool(spec.get("hostNetwork")),
        running=status.get("phase") == "Running" and not meta.get("deletionTimestamp"),
    )


def eligible(pod: PodFacts) -> bool:
    """Can this pod be enrolled at all, whatever the policies say?

    Host-network pods share the node's namespace: enrolling it would
    accelerate every host process. A terminating pod's IP may be reused soon.
    """
    return pod.running and bool(pod.ips) and bool(pod.uid) and not pod.host_network and not pod.opted_out


def selects(policy: AccelerationPolicySpec, pod: PodFacts, namespace_labels: Mapping[str, str] | None) -> bool:
    """Does @policy select @pod (before opt-outs)? Unknown namespaces match nothing."""
    if not policy.enabled or namespace_labels is None:
        return False
    if policy.requireSidecar and not pod.has_sidecar:
        return False
    return policy.namespaceSelector.matches(dict(namespace_labels)) and policy.podSelector.matches(pod.label_dict())


def _merge_ranges(ranges: Iterable[PortRange]) -> list[PortRange]:
    """Sorted, overlapping and adjacent ranges merged: one canonical form, so
    the same set of exclusions always serialises the same (no spurious writes)."""
    merged: list[list[int]] = []
    for r in sorted(ranges, key=lambda r: r.port):
        end = r.endPort or r.port
        if merged and r.port <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([r.port, end])
    return [PortRange(port=a, endPort=b if b != a else None) for a, b in merged]


def enrolment_for(
    pod: PodFacts,
    namespace_labels: Mapping[str, str] | None,
    policies: Iterable[AccelerationPolicySpec],
) -> EnrolledPod | None:
    """The pod's entry in its node's enrolment, or None.

    Several policies may select one pod: the pod gets the union of their
    shapes and the union of their excluded ports (an exclusion is a safety
    statement, so no policy can take away another's)."""
    if not eligible(pod):
        return None
    chosen = [p for p in policies if selects(p, pod, namespace_labels)]
    if not chosen:
        return None
    shapes = sorted({s for p in chosen for s in p.shapes})
    if not pod.has_sidecar:
        shapes = [s for s in shapes if s != Shape.SIDECAR]
    if not shapes:
        return None
    return EnrolledPod(
        namespace=pod.namespace,
        name=pod.name,
        uid=pod.uid,
        ips=list(pod.ips),
        shapes=shapes,
        excludedPorts=_merge_ranges(r for p in chosen for r in p.excludedPorts),
    )


def node_enrolment(
    pods: Iterable[PodFacts],
    namespaces: Mapping[str, Mapping[str, str]],
    policies: Iterable[AccelerationPolicySpec],
) -> NodeEnrolmentSpec:
    """The desired spec of one node's NodeEnrolment, in a canonical order."""
    policies = list(policies)
    entries = [enrolment_for(p, namespaces.get(p.namespace), policies) for p in pods]
    chosen = sorted((e for e in entries if e is not None), key=lambda e: (e.namespace, e.name, e.uid))
    # Two pods can claim one IP for a moment (a pod is deleted, its IP reused
    # before the old object is gone). Enrol neither until it settles: the
    # agent keys the datapath on IPs, and a wrong owner is worse than none.
    owners: dict[str, int] = {}
    for e in chosen:
        for ip in e.ips:
            owners[ip] = owners.get(ip, 0) + 1
    return NodeEnrolmentSpec(pods=[e for e in chosen if all(owners[ip] == 1 for ip in e.ips)])
