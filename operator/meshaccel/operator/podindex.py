"""The operator's view of every scheduled pod: its own list + watch, not kopf's.

Why not kopf for pods: kopf holds every handler back until each listed object
has been indexed, with one toggle per object whose changes wake every waiting
worker; at 10,000 pods that cold start took 850 s of CPU (bench/k8s_scale).
Pods are the one kind with thousands of objects, so they get a plain
informer here: a paginated LIST (server-side `spec.nodeName!=`: unscheduled
pods are not needed), then a WATCH from the list's resourceVersion, JSON
parsed straight into the few facts kept per pod (desired.PodFacts). A watch
that expires (410 Gone) or breaks re-lists and replaces the index in one
step, so the writer never sees a partial picture.

The blocking HTTP runs in a thread; every change to the index is handed to
the event loop (call_soon_threadsafe), so the writer reads it without locks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge

from meshaccel.operator.desired import PodFacts, pod_facts

log = logging.getLogger(__name__)

PODS_INDEXED = Gauge("meshaccel_operator_pods_indexed", "Scheduled pods in the operator's index")
POD_RELISTS = Counter("meshaccel_operator_pod_relists", "Full lists of pods (start, expired or broken watch)")
SCHEDULED = "spec.nodeName!="
PAGE = 500


class PodIndex:
    def __init__(self, api: client.ApiClient, on_node: Callable[[str], None], on_all: Callable[[], None]) -> None:
        self.core = client.CoreV1Api(api)
        self._on_node, self._on_all = on_node, on_all
        self._by_uid: dict[str, PodFacts] = {}
        self._by_node: dict[str, dict[str, PodFacts]] = {}
        self.synced = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()

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
        threading.Thread(target=self._run, name="pod-informer", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                version = self._list()
                backoff = 0.5
                self._watch(version)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("pod informer: %s %s; re-listing", exc.status, exc.reason)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # connection refused while the API server restarts, ...
                log.warning("pod informer interrupted (%s); re-listing", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list(self) -> str:
        pods: list[PodFacts] = []
        token: str | None = None
        while True:
            resp = self.core.list_pod_for_all_namespaces(
                field_selector=SCHEDULED, limit=PAGE, _continue=token, _preload_content=False
            )
            page = json.loads(resp.data)
            pods.extend(f for item in page.get("items", []) if (f := pod_facts(item)) is not None)
            token = page["metadata"].get("continue")
            if not token:
                break
        POD_RELISTS.inc()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._replace, pods)
        return str(page["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        resp = self.core.list_pod_for_all_namespaces(
            field_selector=SCHEDULED,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=300,
            _preload_content=False,
        )
        assert self._loop is not None
        try:
            for line in _lines(resp):
                if self._stop.is_set():
                    return
                event: dict[str, Any] = json.loads(line)
                kind = event.get("type")
                if kind == "ERROR":
                    return  # 410 Gone arrives as an event: re-list
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    facts = pod_facts(event["object"])
                    if facts is not None:
                        self._loop.call_soon_threadsafe(self._apply, kind, facts)
        finally:
            resp.release_conn()


def _lines(resp: Any) -> Iterator[str]:
    """Newline-delimited JSON from a streaming urllib3 response."""
    buffer = b""
    for chunk in resp.stream(65536, decode_content=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode()
