"""kopf wiring: indexes, event handlers and the operator's background tasks.

Handlers stay thin. Indexes hold the small facts the logic needs (never whole
objects); event handlers only mark nodes dirty; the NodeWriter and the status
loop do the work with the pure functions of `desired` and `status`.

kopf calls event handlers only after every index has seen its initial
listing, so the writer gets its view of the cluster from the first event
handler call, and never writes a node's enrolment from a partial picture
(which would briefly un-enrol pods at every operator restart).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from prometheus_client import Counter
from pydantic import ValidationError

from meshaccel.api.conditions import now_rfc3339, set_condition
from meshaccel.api.v1alpha1 import (
    GROUP,
    VERSION,
    AccelerationPolicy,
    AccelerationPolicySpec,
    AccelerationPolicyStatus,
    NodeAgent,
    NodeAgentSpec,
    NodeAgentStatus,
    NodeEnrolment,
    NodeEnrolmentSpec,
    NodeEnrolmentStatus,
)
from meshaccel.kubeclient import api_client
from meshaccel.operator import kubeapi
from meshaccel.operator.deploy import daemonset
from meshaccel.operator.podindex import PodIndex
from meshaccel.operator.status import policy_status
from meshaccel.operator.writer import ClusterView, NodeWriter

log = logging.getLogger(__name__)

POLICY_STATUS_WRITES = Counter("meshaccel_operator_policy_status_writes", "AccelerationPolicy status writes")


@dataclass
class Runtime:
    """Set by `meshaccel operator` before kopf starts."""

    status_interval: float = 10.0
    debounce: float = 0.05
    api: Any = None
    writer: NodeWriter | None = None
    indexes: dict[str, Any] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pods: PodIndex | None = None
    may_write: Callable[[], bool] = lambda: True  # the leader elector's holds()
    seen: dict[tuple[str, str], Any] = field(default_factory=dict)  # last labels/spec per namespace/policy


RUNTIME = Runtime()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # The one place that owns kopf's settings.
    settings.peering.standalone = True  # one replica, guarded by our Lease
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-applied")
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300  # re-list at least every 5 min
    settings.watching.reconnect_backoff = 1.0
    RUNTIME.api = api_client()
    RUNTIME.writer = writer = NodeWriter(
        kubeapi.KubeNodeEnrolments(RUNTIME.api), debounce=RUNTIME.debounce, may_write=RUNTIME.may_write
    )
    RUNTIME.pods = PodIndex(RUNTIME.api, on_node=writer.mark, on_all=writer.mark_all)
    RUNTIME.pods.start(asyncio.get_running_loop())
    RUNTIME.tasks = [
        asyncio.create_task(RUNTIME.writer.run(), name="node-writer"),
        asyncio.create_task(_status_loop(), name="policy-status"),
    ]


# --- indexes -----------------------------------------------------------------------


@kopf.index("namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    return {name: dict(labels)}


@kopf.index(GROUP, VERSION, AccelerationPolicy.plural)
def policies(name: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[str, Any] | None:
    try:
        parsed = AccelerationPolicySpec.model_validate(dict(spec))
        current = AccelerationPolicyStatus.model_validate(dict(status)) if status else None
    except ValidationError as exc:  # the CRD schema should have refused it
        log.error("AccelerationPolicy %s ignored: %s", name, exc)
        return None
    return {name: (meta.get("generation", 0), parsed, current)}


@kopf.index(GROUP, VERSION, NodeEnrolment.plural)
def node_enrolments(name: str, spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[str, Any] | None:
    try:
        parsed = NodeEnrolmentSpec.model_validate(dict(spec))
        reported = NodeEnrolmentStatus.model_validate(dict(status)) if status else None
    except ValidationError as exc:
        log.error("NodeEnrolment %s unreadable: %s", name, exc)
        return None
    return {name: (parsed, reported)}


def _first(index: Any, key: str) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


class _Unique(Mapping[str, Any]):
    """A read-only view of a kopf index whose keys hold one value each
    (object names: namespaces, policies, node objects)."""

    def __init__(self, index: Any) -> None:
        self._index = index

    def __getitem__(self, key: str) -> Any:
        value = _first(self._index, key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._index.keys()))

    def __len__(self) -> int:
        return len(self._index)


class _PolicySpecs:
    """Live iterable over the specs in the policies index."""

    def __init__(self, index: Any) -> None:
        self._policies = _Unique(index)

    def __iter__(self) -> Iterator[AccelerationPolicySpec]:
        return iter([entry[1] for entry in self._policies.values()])


def _bind(indexes: dict[str, Any]) -> NodeWriter:
    """Give the writer its view the first time any event handler runs."""
    writer = RUNTIME.writer
    assert writer is not None
    if writer.view is None:
        RUNTIME.indexes = indexes
        pods = RUNTIME.pods
        assert pods is not None
        nodes = _Unique(indexes["node_enrolments"])

        def current(node: str) -> NodeEnrolmentSpec | None:
            entry = nodes.get(node)
            return entry[0] if entry else None

        writer.view = ClusterView(
            pods_on=pods.pods_on,
            nodes_with_pods=pods.nodes,
            synced=lambda: pods.synced,
            namespaces=_Unique(indexes["namespace_labels"]),
            policies=_PolicySpecs(indexes["policies"]),
            current=current,
        )
        writer.mark_all()
        log.info("kopf indexes complete: %d namespace(s)", len(writer.view.namespaces))
    return writer


# --- events: mark what changed -----------------------------------------------------


def _mark_all_if_changed(kind: str, name: str, type: str | None, relevant: Any, kwargs: dict[str, Any]) -> None:
    """Re-evaluate every node, but only when what selection depends on changed:
    a namespace's labels, a policy's spec. Annotations, our own status writes
    and re-lists then cost nothing."""
    writer = _bind(_indexes(kwargs))
    key = (kind, name)
    value = None if type == "DELETED" else relevant
    if RUNTIME.seen.get(key, ...) != value:
        RUNTIME.seen[key] = value
        writer.mark_all()


@kopf.on.event("namespaces")
def namespace_event(name: str, type: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    _mark_all_if_changed("namespace", name, type, dict(labels), kwargs)


@kopf.on.event(GROUP, VERSION, AccelerationPolicy.plural)
def policy_event(name: str, type: str | None, spec: kopf.Spec, **kwargs: Any) -> None:
    _mark_all_if_changed("policy", name, type, dict(spec), kwargs)


@kopf.on.event(GROUP, VERSION, NodeEnrolment.plural)
def node_enrolment_event(name: str, type: str | None, spec: kopf.Spec, **kwargs: Any) -> None:
    writer = _bind(_indexes(kwargs))
    seen = None if type == "DELETED" else NodeEnrolmentSpec.model_validate(dict(spec))
    writer.observed(name, seen)


def _indexes(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in ("namespace_labels", "policies", "node_enrolments")}


# --- policy status ----------------------------------------------------------------


async def _status_loop() -> None:
    while True:
        await asyncio.sleep(RUNTIME.status_interval)
        if RUNTIME.writer is None or RUNTIME.writer.view is None:
            continue
        try:
            await _write_policy_statuses()
        except Exception as exc:
            log.warning("policy status update failed: %s", exc)


async def _write_policy_statuses() -> None:
    if not RUNTIME.may_write():
        return
    idx = RUNTIME.indexes
    assert RUNTIME.pods is not None
    pods = RUNTIME.pods.all()
    namespaces = _Unique(idx["namespace_labels"])
    nodes = {name: entry[1] for name, entry in _Unique(idx["node_enrolments"]).items()}
    now = now_rfc3339()
    for name, (generation, spec, previous) in _Unique(idx["policies"]).items():
        new = policy_status(spec, generation, pods, namespaces, nodes, previous, now)
        if previous is not None and _same(previous, new):
            continue
        await asyncio.to_thread(
            kubeapi.patch_status, RUNTIME.api, AccelerationPolicy.plural, name, new.model_dump(mode="json")
        )
        POLICY_STATUS_WRITES.inc()


def _same(a: AccelerationPolicyStatus, b: AccelerationPolicyStatus) -> bool:
    return a.model_dump() == b.model_dump()


# --- the agent DaemonSet ------------------------------------------------------------


def _require_leadership() -> None:
    if not RUNTIME.may_write():
        raise kopf.TemporaryError("leadership not confirmed (lease not renewed); retrying", delay=5)


@kopf.on.resume(GROUP, VERSION, NodeAgent.plural)
@kopf.on.create(GROUP, VERSION, NodeAgent.plural)
@kopf.on.update(GROUP, VERSION, NodeAgent.plural, field="spec")
async def ensure_agent(name: str, namespace: str | None, uid: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> None:
    assert namespace is not None  # NodeAgent is namespaced
    _require_leadership()
    parsed = NodeAgentSpec.model_validate(dict(spec))
    outcome = await asyncio.to_thread(kubeapi.apply_daemonset, RUNTIME.api, daemonset(name, namespace, parsed, uid))
    log.info("agent DaemonSet %s/%s %s", namespace, name, outcome)


@kopf.on.delete(GROUP, VERSION, NodeAgent.plural)
async def remove_agent(name: str, namespace: str | None, **_: Any) -> None:
    # Uninstall: the agents see their DaemonSet go and detach + unpin.
    assert namespace is not None
    _require_leadership()
    await asyncio.to_thread(kubeapi.delete_daemonset, RUNTIME.api, name, namespace)
    log.info("agent DaemonSet %s/%s deleted", namespace, name)


@kopf.timer(GROUP, VERSION, NodeAgent.plural, interval=5.0, backoff=5.0)
async def watch_agent(
    name: str, namespace: str | None, uid: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> None:
    """Mirror the DaemonSet's rollout into the NodeAgent's status, and put the
    DaemonSet back if someone deleted it. (A timer reading one object by name,
    not a watch: a cluster-wide DaemonSet watch would need cluster-wide RBAC.)"""
    assert namespace is not None
    if meta.get("deletionTimestamp") or not RUNTIME.may_write():
        return
    ds = await asyncio.to_thread(kubeapi.read_daemonset, RUNTIME.api, name, namespace)
    if ds is None:
        body = daemonset(name, namespace, NodeAgentSpec.model_validate(dict(spec)), uid)
        await asyncio.to_thread(kubeapi.apply_daemonset, RUNTIME.api, body)
        log.warning("agent DaemonSet %s/%s was missing; recreated", namespace, name)
        return
    generation = int(meta.get("generation", 0))
    desired, ready = int(ds.get("desiredNumberScheduled", 0)), int(ds.get("numberReady", 0))
    available = desired > 0 and ready == desired
    old = NodeAgentStatus.model_validate(dict(status)) if status else None
    conditions = set_condition(
        old.conditions if old else [],
        "Available",
        "True" if available else "False",
        "AllAgentsReady" if available else ("NoNodes" if desired == 0 else "AgentsNotReady"),
        f"{ready}/{desired} agents ready",
        generation,
        now_rfc3339(),
    )
    new = NodeAgentStatus(
        observedGeneration=generation, daemonSet=name, nodesDesired=desired, nodesReady=ready, conditions=conditions
    )
    if old is None or old.model_dump() != new.model_dump():
        await asyncio.to_thread(
            kubeapi.patch_status, RUNTIME.api, NodeAgent.plural, name, new.model_dump(mode="json"), namespace
        )
