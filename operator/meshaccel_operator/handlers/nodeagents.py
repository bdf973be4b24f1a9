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


# No finalizer on NodeAgents: the DaemonSet's ownerReference lets the garbage
# collector delete it with its NodeAgent, even when no operator runs any more;
# its agents then see it gone and uninstall. So no delete handler and no
# kopf timer (kopf puts a finalizer on every object a timer runs for): the
# watch below is one task over the NodeAgents an event handler records.

#: (namespace, name) -> the NodeAgent's latest body, from its watch events.
AGENTS: dict[tuple[str, str], dict[str, Any]] = {}


@kopf.on.event(GROUP, VERSION, NodeAgent.plural)
def record_agent(name: str, namespace: str | None, type: str | None, body: kopf.Body, **_: Any) -> None:
    key = (namespace or "", name)
    if type == "DELETED":
        AGENTS.pop(key, None)
    else:
        AGENTS[key] = dict(body)


async def agent_loop(interval: float = 5.0) -> None:
    """Every @interval: each NodeAgent's status mirrors its DaemonSet's
    rollout, and a DaemonSet someone deleted is put back. (Reads of one
    object by name, not a watch: a cluster-wide DaemonSet watch would need
    cluster-wide RBAC.)"""
    while True:
        await asyncio.sleep(interval)
        for (namespace, name), body in list(AGENTS.items()):
            try:
                await watch_agent(namespace, name, body)
            except Exception as exc:  # one bad object must not stop the others
                log.warning("NodeAgent %s/%s: %s", namespace, name, exc)


async def watch_agent(namespace: str, name: str, body: dict[str, Any]) -> None:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status")
    if meta.get("deletionTimestamp") or not RUNTIME.may_write():
        return
    ds = await asyncio.to_thread(kubeapi.read_daemonset, RUNTIME.api, name, namespace)
    if ds is None:
        desired = daemonset(name, namespace, NodeAgentSpec.model_validate(dict(spec)), meta.get("uid"))
        await asyncio.to_thread(kubeapi.apply_daemonset, RUNTIME.api, desired)
        log.warning("agent DaemonSet %s/%s was missing; recreated", namespace, name)
        return
    old = NodeAgentStatus.model_validate(dict(status)) if status else None
    new = nodeagent_status(name, int(meta.get("generation", 0)), ds, old, now_rfc3339())
    if old is None or old.model_dump() != new.model_dump():
        await asyncio.to_thread(
            kubeapi.patch_status, RUNTIME.api, NodeAgent.plural, name, new.model_dump(mode="json"), namespace
        )
        body["status"] = new.model_dump(mode="json")  # until the watch brings the object back
