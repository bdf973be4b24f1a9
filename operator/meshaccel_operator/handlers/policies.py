"""AccelerationPolicies: their specs select pods; their status is written
every `status_interval` from the pods and the agents' reports."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from prometheus_client import Counter
from pydantic import ValidationError

from meshaccel_api.conditions import now_rfc3339
from meshaccel_api.v1alpha1 import (
    GROUP,
    VERSION,
    AccelerationPolicy,
    AccelerationPolicySpec,
    AccelerationPolicyStatus,
)
from meshaccel_operator import kubeapi
from meshaccel_operator.handlers.runtime import RUNTIME, Unique, indexes_of
from meshaccel_operator.handlers.view import mark_all_if_changed
from meshaccel_operator.status import policy_status

log = logging.getLogger(__name__)

POLICY_STATUS_WRITES = Counter("meshaccel_operator_policy_status_writes", "AccelerationPolicy status writes")


@kopf.index(GROUP, VERSION, AccelerationPolicy.plural)
def policies(name: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[str, Any] | None:
    try:
        parsed = AccelerationPolicySpec.model_validate(dict(spec))
        current = AccelerationPolicyStatus.model_validate(dict(status)) if status else None
    except ValidationError as exc:  # the CRD schema should have refused it
        log.error("AccelerationPolicy %s ignored: %s", name, exc)
        return None
    return {name: (meta.get("generation", 0), parsed, current)}


@kopf.on.event(GROUP, VERSION, AccelerationPolicy.plural)
def policy_event(name: str, type: str | None, spec: kopf.Spec, **kwargs: Any) -> None:
    mark_all_if_changed("policy", name, type, dict(spec), indexes_of(kwargs))


async def status_loop() -> None:
    while True:
        await asyncio.sleep(RUNTIME.settings.status_interval)
        if RUNTIME.writer is None or RUNTIME.writer.view is None:
            continue
        try:
            await write_policy_statuses()
        except Exception as exc:
            log.warning("policy status update failed: %s", exc)


async def write_policy_statuses() -> None:
    if not RUNTIME.may_write():
        return
    idx = RUNTIME.indexes
    assert RUNTIME.pods is not None
    pods = RUNTIME.pods.all()
    namespaces = Unique(idx["namespace_labels"])
    nodes = {name: entry[1] for name, entry in Unique(idx["node_enrolments"]).items()}
    now = now_rfc3339()
    for name, (generation, spec, previous) in Unique(idx["policies"]).items():
        new = policy_status(spec, generation, pods, namespaces, nodes, previous, now)
        if previous is not None and previous.model_dump() == new.model_dump():
            continue
        await asyncio.to_thread(
            kubeapi.patch_status, RUNTIME.api, AccelerationPolicy.plural, name, new.model_dump(mode="json")
        )
        POLICY_STATUS_WRITES.inc()
