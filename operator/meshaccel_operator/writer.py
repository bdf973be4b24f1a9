"""Keeps every NodeEnrolment's spec equal to what the cluster's pods call for.

Watch events only mark nodes dirty; one task recomputes the dirty nodes and
writes those whose desired spec differs from what the API server holds. Many
events for one node (a Deployment rolling 30 pods) coalesce into one write,
and an event that changes nothing (a label on an unrelated pod, a status
heartbeat, a resync) causes no write at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from meshaccel_api.v1alpha1 import AccelerationPolicySpec, NodeEnrolmentSpec
from meshaccel_operator.desired import PodFacts, node_enrolment

log = logging.getLogger(__name__)

NODE_WRITES = Counter("meshaccel_operator_node_writes", "NodeEnrolment writes, by operation", ["operation"])
WRITE_ERRORS = Counter("meshaccel_operator_write_errors", "Failed writes to the API server (retried)")
QUEUE_DEPTH = Gauge(
    "meshaccel_operator_workqueue_depth",
    "Nodes whose NodeEnrolment waits to be recomputed or is being written (0: the writer is idle)",
)
DIRTY_TO_WRITTEN = Histogram(
    "meshaccel_operator_node_update_seconds",
    "From the first event that changed a node's desired enrolment to its NodeEnrolment written",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)


@dataclass(frozen=True)
class ClusterView:
    """A consistent read of the operator's in-memory indexes."""

    pods_on: Callable[[str], Iterable[PodFacts]]
    nodes_with_pods: Callable[[], Iterable[str]]
    synced: Callable[[], bool]  # the pod index has its first full listing
    namespaces: Mapping[str, Mapping[str, str]]
    policies: Iterable[AccelerationPolicySpec]
    current: Callable[[str], NodeEnrolmentSpec | None]  # spec in the API server, None if no object


class NodeEnrolmentStore(Protocol):
    """The three writes the writer makes (blocking; run in a thread)."""

    def create(self, node: str, spec: dict[str, Any]) -> None: ...
    def replace_spec(self, node: str, spec: dict[str, Any]) -> None: ...
    def delete(self, node: str) -> None: ...


class NodeWriter:
    def __init__(
        self,
        store: NodeEnrolmentStore,
        debounce: float = 0.05,
        retry: float = 1.0,
        may_write: Callable[[], bool] = lambda: True,
        parallel: int = 8,
    ) -> None:
        self._slots = asyncio.Semaphore(parallel)  # writes in flight at once
        self.store = store
        self.may_write = may_write  # false while leadership is not confirmed
        self.debounce = debounce
        self.retry = retry
        self.view: ClusterView | None = None  # set once kopf's indexes are complete
        self._dirty: dict[str, float] = {}  # node -> monotonic time it first became dirty
        self._all_since: float | None = None
        self._written: dict[str, NodeEnrolmentSpec] = {}
        self._in_flight: set[str] = set()
        self._wake = asyncio.Event()
        QUEUE_DEPTH.set_function(self.depth)

    def depth(self) -> int:
        """Nodes marked dirty or being synced; a pending full pass counts
        every node it will visit. Read from the metrics thread: a snapshot."""
        pending = set(self._dirty) | set(self._in_flight)
        if self._all_since is not None:
            pending |= set(self._written) | (set(self.view.nodes_with_pods()) if self.view else {"*"})
        return len(pending)

    def mark(self, node: str) -> None:
        self._dirty.setdefault(node, time.monotonic())
        self._wake.set()

    def mark_all(self) -> None:
        if self._all_since is None:
            self._all_since = time.monotonic()
        self._wake.set()

    def observed(self, node: str, spec: NodeEnrolmentSpec | None) -> None:
        """A NodeEnrolment event: if the object no longer holds what we wrote
        (edited by hand, deleted), forget our copy so the next pass repairs it."""
        if self._written.get(node) != spec:
            self._written.pop(node, None)
            self.mark(node)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.debounce)  # coalesce a burst of events
            self._wake.clear()
            if self.view is None or not self.view.synced():
                continue  # no complete picture yet; marks are kept
            view = self.view
            if self._all_since is not None:
                for node in set(view.nodes_with_pods()) | set(self._written):
                    self._dirty.setdefault(node, self._all_since)
                self._all_since = None
            dirty, self._dirty = self._dirty, {}
            self._in_flight |= set(dirty)  # no moment in which depth() misses them
            await asyncio.gather(*(self._sync_one(view, node, since) for node, since in sorted(dirty.items())))

    async def _sync_one(self, view: ClusterView, node: str, since: float) -> None:
        try:
            async with self._slots:
                await self._sync(view, node, since)
        except Exception as exc:  # API errors, conflicts: retry this node later
            WRITE_ERRORS.inc()
            log.warning("NodeEnrolment %s: write failed (%s); retrying in %.0fs", node, exc, self.retry)
            self._dirty.setdefault(node, since)
            asyncio.get_running_loop().call_later(self.retry, self._wake.set)
        finally:
            # After the write's counter moved: depth 0 means every write
            # that reached the API server is counted.
            self._in_flight.discard(node)

    async def _sync(self, view: ClusterView, node: str, since: float) -> None:
        if not self.may_write():
            raise RuntimeError("leadership not confirmed (lease not renewed)")
        pods = list(view.pods_on(node))
        current = self._written.get(node) or view.current(node)
        if not pods:
            # No pod at all (not even the agent's): the node is gone.
            if current is not None:
                await asyncio.to_thread(self.store.delete, node)
                NODE_WRITES.labels("delete").inc()
                log.info("NodeEnrolment %s deleted: no pods on the node", node)
            self._written.pop(node, None)
            return
        desired = node_enrolment(pods, view.namespaces, view.policies)
        if current == desired:
            return
        body = desired.model_dump(mode="json", exclude_none=True)
        if current is None and view.current(node) is None:
            await asyncio.to_thread(self.store.create, node, body)
            NODE_WRITES.labels("create").inc()
        else:
            await asyncio.to_thread(self.store.replace_spec, node, body)
            NODE_WRITES.labels("patch").inc()
        self._written[node] = desired
        DIRTY_TO_WRITTEN.observe(time.monotonic() - since)
        log.info("NodeEnrolment %s: %d pod(s)", node, len(desired.pods))
