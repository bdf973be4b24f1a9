"""NodeAgents: each becomes the agent DaemonSet of its namespace."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from meshaccel_api.conditions import now_rfc3339
from meshaccel_api.v1alpha1 import GROUP, VERSION, NodeAgent, NodeAgentSpec, NodeAgentStatus
from meshaccel_operator import kubeapi
from meshaccel_operator.deploy import daemonset
from meshaccel_operator.handlers.runtime import RUNTIME
from meshaccel_operator.status import nodeagent_status

log = logging.getLogger(__name__)


def _require_leadership() -> None:
    if not RUNTIME.may_write():
        raise kopf.TemporaryError("leadership not confirmed (lease not renewed); retrying", delay=5)


@kopf.on.resume(GROUP, VERSION, NodeAgent.plural)
@kopf.on.create(GROUP, VERSION, NodeAgent.plural)
@kopf.on.update(GROUP, VERSION, NodeAgent.plural, field="spec")
async def ensure_agent(name: str, namespace: str | None, uid: str, spec: kopf.Spec, **_: Any) -> None:
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
    old = NodeAgentStatus.model_validate(dict(status)) if status else None
    new = nodeagent_status(name, int(meta.get("generation", 0)), ds, old, now_rfc3339())
    if old is None or old.model_dump() != new.model_dump():
        await asyncio.to_thread(
            kubeapi.patch_status, RUNTIME.api, NodeAgent.plural, name, new.model_dump(mode="json"), namespace
        )
