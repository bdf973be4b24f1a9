"""The operator's view of every scheduled pod: its own list + watch, not kopf's.

Why not kopf for pods: kopf holds every handler back until each listed object
has been indexed, with one toggle per object whose changes wake every waiting
worker; at 10,000 pods that cold start took 850 s of CPU (bench/k8s_scale).
Pods are the one kind with thousands of objects, so they get a plain
informer here (the shared ListWatch, server-side `spec.nodeName!=`:
unscheduled pods are not needed), JSON parsed straight into the few facts
kept per pod (desired.PodFacts). A watch that ends is resumed from its last
resourceVersion; one that expired (410 Gone) re-lists and replaces the index
in one step, so the writer never sees a partial picture.

The blocking HTTP runs in a thread; every change to the index is handed to
the event loop (call_soon_threadsafe), so the writer reads it without locks.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client
from prometheus_client import Counter, Gauge

from meshaccel_api.listwatch import ListWatch
from meshaccel_operator.desired import PodFacts, pod_facts

PODS_INDEXED = Gauge("meshaccel_operator_pods_indexed", "Scheduled pods in the operator's index")
POD_RELISTS = Counter("meshaccel_operator_pod_relists", "Full lists of pods (start, expired or broken watch)")
SCHEDULED = "spec.nodeName!="
PAGE = 500


class PodIndex:
    def __init__(self, api: client.ApiClient, on_node: Callable[[str], None], on_all: Callable[[], None]) -> None:
        list_fn = functools.partial(client.CoreV1Api(api).list_pod_for_all_namespaces, field_selector=SCHEDULED)
        self.listwatch = ListWatch(list_fn, self._on_list, self._on_event, name="pods", page=PAGE)
        self._on_node, self._on_all = on_node, on_all
        self._by_uid: dict[str, PodFacts] = {}
        self._by_node: dict[str, dict[str, PodFacts]] = {}
        self.synced = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- reads (event loop thread) --------------------------------------------

    def pods_on(self, node: str) -> list[PodFacts]:
        return list(self._by_node.get(node, {}).values())

    def nodes(self) -> list[str]:
        return list(self._by_node)

    def all(self) -> list[PodFacts]:
        return list(self._by_uid.values())

    # -- writes (event loop thread) -------------------------------------------

    def _replace(self, pods: Iterable[PodFacts]) -> None:
        self._by_uid, self._by_node = {}, {}
        for p in pods:
            self._put(p)
        self.synced = True
        PODS_INDEXED.set(len(self._by_uid))
        self._on_all()

    def _put(self, facts: PodFacts) -> None:
        self._by_uid[facts.uid] = facts
        self._by_node.setdefault(facts.node, {})[facts.uid] = facts

    def _apply(self, kind: str, facts: PodFacts) -> None:
        old = self._by_uid.pop(facts.uid, None)
        if old is not None:
            on_node = self._by_node.get(old.node, {})
            on_node.pop(old.uid, None)
            if not on_node:
                self._by_node.pop(old.node, None)
        if kind != "DELETED":
            self._put(facts)
        if old != facts or kind == "DELETED":
            self._on_node(facts.node)
        PODS_INDEXED.set(len(self._by_uid))

    # -- the informer thread ----------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.listwatch.start()

    def stop(self) -> None:
        self.listwatch.stop()

    def _on_list(self, items: list[dict[str, Any]]) -> None:
        POD_RELISTS.inc()
        pods = [f for item in items if (f := pod_facts(item)) is not None]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._replace, pods)

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        facts = pod_facts(obj)
        if facts is not None:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._apply, kind, facts)
