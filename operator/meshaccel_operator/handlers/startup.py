"""The one @kopf.on.startup: kopf's settings, the writer, the pod index and
the background tasks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from meshaccel_api.kube import api_client
from meshaccel_api.v1alpha1 import GROUP
from meshaccel_operator import kubeapi
from meshaccel_operator.handlers.nodeagents import agent_loop
from meshaccel_operator.handlers.policies import status_loop
from meshaccel_operator.handlers.runtime import RUNTIME
from meshaccel_operator.podindex import PodIndex
from meshaccel_operator.writer import NodeWriter


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True  # one replica, guarded by our Lease
    settings.persistence.finalizer = f"{GROUP}/operator"  # no handler needs one (handlers/nodeagents.py)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-applied")
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.reconnect_backoff = 1.0
    RUNTIME.api = api_client()
    RUNTIME.writer = writer = NodeWriter(
        kubeapi.KubeNodeEnrolments(RUNTIME.api), debounce=RUNTIME.debounce, may_write=RUNTIME.may_write
    )
    RUNTIME.pods = PodIndex(RUNTIME.api, on_node=writer.mark, on_all=writer.mark_all)
    RUNTIME.pods.start(asyncio.get_running_loop())
    RUNTIME.tasks = [
        asyncio.create_task(writer.run(), name="node-writer"),
        asyncio.create_task(status_loop(), name="policy-status"),
        asyncio.create_task(agent_loop(), name="node-agents"),
    ]
