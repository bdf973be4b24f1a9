"""Kubernetes mode: enrolment from this node's NodeEnrolment, status back to it.

The agent watches one object (its node's NodeEnrolment, by name), resolves
each listed pod to its network namespace (see podnetns), reconciles the
datapath, and writes the object's status: within `min_interval` when the
enrolment or health changed, and otherwise only when the counters moved,
checked every `status_interval`. An idle node writes
nothing.

At SIGTERM it asks the API server whether its own DaemonSet still exists and
is not being deleted: yes means a restart or rolling update (keep the
datapath attached and pinned, connections keep their acceleration); no means
uninstall (detach and unpin).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from meshaccel.agent.datapath import Datapath, DesiredNetns, cleanup
from meshaccel.agent.layout import Counter
from meshaccel.agent.podnetns import Problem, ResolveError, resolve_pod
from meshaccel.agent.runner import AgentRunner
from meshaccel.api.conditions import now_rfc3339, set_condition
from meshaccel.api.v1alpha1 import (
    GROUP,
    VERSION,
    EnrolledPod,
    NodeEnrolment,
    NodeEnrolmentSpec,
    NodeEnrolmentStatus,
    PodProblem,
    TrafficCounters,
)

log = logging.getLogger(__name__)


class NodeObjectWatch:
    """Keeps the latest spec of one NodeEnrolment, by list + watch in a thread.

    A watch that expires (410 Gone after etcd compaction) or breaks (API
    server restart) is re-listed; the last spec seen stays in force meanwhile,
    so an unreachable API server never un-enrols anything."""

    def __init__(self, api: client.ApiClient, node: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.node = node
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._latest: tuple[int, NodeEnrolmentSpec] | None = None
        self._stop = threading.Event()
        self.relists = 0

    def latest(self) -> tuple[int, NodeEnrolmentSpec] | None:
        with self._lock:
            return self._latest

    def _set(self, obj: dict[str, Any] | None) -> None:
        value = None
        if obj is not None:
            value = (int(obj["metadata"].get("generation", 0)), NodeEnrolmentSpec.model_validate(obj.get("spec") or {}))
        with self._lock:
            if value != self._latest:
                self._latest = value
                self.changed.set()

    def start(self) -> None:
        threading.Thread(target=self._run, name="node-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        selector = f"metadata.name={self.node}"
        backoff = 0.5
        while not self._stop.is_set():
            try:
                listing = self.custom.list_cluster_custom_object(
                    GROUP, VERSION, NodeEnrolment.plural, field_selector=selector
                )
                self.relists += 1
                items = listing.get("items") or []
                self._set(items[0] if items else None)
                version = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    NodeEnrolment.plural,
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=300,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    kind = event["type"]
                    if kind == "ERROR":
                        break  # 410 Gone arrives as an ERROR event: re-list
                    if kind in ("ADDED", "MODIFIED"):
                        self._set(event["object"])
                    elif kind == "DELETED":
                        self._set(None)
                backoff = 0.5
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watch of NodeEnrolment %s failed: %s %s", self.node, exc.status, exc.reason)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # connection refused during an API server restart, ...
                log.warning("watch of NodeEnrolment %s interrupted: %s", self.node, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)


def desired_from(pods: list[EnrolledPod], cgroup_root: Path) -> tuple[list[DesiredNetns], list[str], list[PodProblem]]:
    """Resolve each pod; a namespace claimed by two pods is refused for both."""
    resolved: dict[str, tuple[EnrolledPod, int]] = {}
    problems: list[PodProblem] = []
    for pod in pods:
        key = f"{pod.namespace}/{pod.name}"
        try:
            netns = resolve_pod(cgroup_root, pod.uid, list(pod.ips))
        except ResolveError as exc:
            problems.append(PodProblem(pod=key, reason=exc.reason, message=str(exc)[:1024]))
            continue
        resolved[key] = (pod, netns.cookie)
    owners: dict[int, list[str]] = {}
    for key, (_, cookie) in resolved.items():
        owners.setdefault(cookie, []).append(key)
    desired: list[DesiredNetns] = []
    enrolled: list[str] = []
    for key, (pod, cookie) in sorted(resolved.items()):
        if len(owners[cookie]) > 1:
            others = ", ".join(k for k in owners[cookie] if k != key)
            problems.append(PodProblem(pod=key, reason=Problem.NETNS_SHARED, message=f"same netns as {others}"))
            continue
        desired.append(
            DesiredNetns(
                cookie,
                frozenset(pod.ips),
                frozenset(p for r in pod.excludedPorts for p in r.ports()),
                sidecar="sidecar" in pod.shapes,
                direct="direct" in pod.shapes,
            )
        )
        enrolled.append(key)
    return desired, enrolled, sorted(problems, key=lambda p: p.pod)


class KubernetesAgent(AgentRunner):
    def __init__(
        self,
        datapath: Datapath,
        api: client.ApiClient,
        node: str,
        namespace: str,
        daemonset: str,
        metrics_address: str,
        cgroup_root: Path,
        status_interval: float = 10.0,
        min_interval: float = 1.0,
        poll_seconds: float = 0.2,
        ignore_selftest: bool = False,
        liveness_timeout: float = 60.0,
    ) -> None:
        super().__init__(datapath, metrics_address, poll_seconds, ignore_selftest, liveness_timeout)
        self.api = api
        self.node, self.namespace, self.daemonset = node, namespace, daemonset
        self.cgroup_root = cgroup_root
        self.status_interval = status_interval
        self.min_interval = min_interval
        self.watch = NodeObjectWatch(api, node)
        self._generation = 0
        self._desired_count = 0
        self._enrolled: list[str] = []
        self._problems: list[PodProblem] = []
        self._reconciled_at: str | None = None
        self._reported: NodeEnrolmentStatus | None = None
        self._checked_at = 0.0
        self._status_dirty = True  # enrolment or health changed since the last status
        self.status_writes = PromCounter(
            "meshaccel_status_writes", "Writes of this node's NodeEnrolment status", registry=self.registry
        )
        self.watch_relists = Gauge(
            "meshaccel_node_watch_relists",
            "Lists of the node object (start, expired or broken watches)",
            registry=self.registry,
        )
        self.watch_relists.set_function(lambda: self.watch.relists)

    def run(self) -> None:
        self.watch.start()
        super().run()

    # -- enrolment -------------------------------------------------------------

    def tick(self, count: int) -> None:
        # Re-resolve every few seconds even without a change: a pod's
        # processes appear some time after the API server lists the pod.
        retry = count % 25 == 24 and bool(self._problems)
        if self.watch.changed.is_set() or retry or count == 0:
            self.watch.changed.clear()
            self.reconcile()
        self.report_status()

    def reconcile(self) -> None:
        latest = self.watch.latest()
        if latest is None:
            return  # no object yet (operator not running): keep whatever is enrolled
        generation, spec = latest
        desired, enrolled, problems = desired_from(spec.pods, self.cgroup_root)
        if not self.apply(desired):
            self._status_dirty = True  # Ready turns False
            return
        changed = (generation, enrolled, problems) != (self._generation, self._enrolled, self._problems)
        self._generation, self._enrolled, self._problems = generation, enrolled, problems
        self._desired_count = len(spec.pods)
        if changed or self._reconciled_at is None:
            self._reconciled_at = now_rfc3339()
            self._status_dirty = True
            for p in problems:
                log.warning("pod %s not enrolled (%s): %s", p.pod, p.reason, p.message)

    # -- status ----------------------------------------------------------------

    def build_status(self) -> NodeEnrolmentStatus:
        snap = self.snapshot()
        counters = TrafficCounters(socketsEnrolled=snap.sockets)
        if snap.counters is not None:
            c = snap.counters
            counters = TrafficCounters(
                socketsEnrolled=snap.sockets,
                messagesRedirected=c[Counter.REDIR_MSGS],
                bytesRedirected=c[Counter.REDIR_BYTES],
                messagesPassed=sum(
                    c[k]
                    for k in (Counter.PASS_NATIVE, Counter.PASS_PEER_GONE, Counter.PASS_NO_STATE, Counter.PASS_SHUTDOWN)
                ),
                bytesPassed=c[Counter.PASS_NATIVE_BYTES],
            )
        h = self.health
        prev = self._reported.conditions if self._reported else []
        now, gen = now_rfc3339(), self._generation
        ready, why = self.ready()
        conds = set_condition(
            prev,
            "Ready",
            "True" if ready else "False",
            "Enrolled" if ready else (h.degraded_reason or "NotReconciled"),
            why,
            gen,
            now,
        )
        selftest_ok = h.selftest.ok or not h.selftest.passed
        kernel_ok = h.degraded_reason not in ("SelfTestFailed", "NoCgroup2", "NoKernelHeaders") and selftest_ok
        conds = set_condition(
            conds,
            "KernelSupported",
            "True" if kernel_ok else "False",
            "SelfTestPassed" if kernel_ok else (h.degraded_reason or "SelfTestFailed"),
            h.message if not kernel_ok else "",
            gen,
            now,
        )
        conds = set_condition(
            conds,
            "Degraded",
            "True" if h.degraded_reason else "False",
            h.degraded_reason or "AsExpected",
            h.message,
            gen,
            now,
        )
        features = {f"selftest.{k}": v for k, v in h.selftest.passed.items()}
        features["btf"] = os.path.exists("/sys/kernel/btf/vmlinux")
        return NodeEnrolmentStatus(
            observedGeneration=gen,
            kernel=os.uname().release,
            features=features,
            datapathAttached=h.attached,
            podsDesired=self._desired_count,
            podsEnrolled=len(self._enrolled),
            enrolledPods=self._enrolled[:1024],
            problems=self._problems[:64],
            counters=counters,
            lastReconcileTime=self._reconciled_at,
            conditions=conds,
        )

    def report_status(self) -> None:
        """Write the status when it differs from the last one written.

        Building it walks the whole sockhash (the socket count), so it is
        built at most every `min_interval` after the enrolment changed and
        otherwise only every `status_interval` (counters)."""
        since = time.monotonic() - self._checked_at
        if since < (self.min_interval if self._status_dirty else self.status_interval):
            return
        self._checked_at = time.monotonic()
        self._status_dirty = False
        status = self.build_status()
        if status == self._reported:
            return
        body = {"status": status.model_dump(mode="json", exclude_none=True)}
        try:
            client.CustomObjectsApi(self.api).patch_cluster_custom_object_status(
                GROUP, VERSION, NodeEnrolment.plural, self.node, body
            )
        except Exception as exc:  # 404: the operator has not created our object yet
            if not (isinstance(exc, ApiException) and exc.status == 404):
                log.warning("status of NodeEnrolment %s not written: %s", self.node, exc)
            self._status_dirty = True  # retry after min_interval
            return
        self._reported = status
        self.status_writes.inc()

    # -- shutdown --------------------------------------------------------------

    def uninstalling(self) -> bool:
        """Is our DaemonSet gone or being deleted? Unsure (API down) means no:
        keeping the datapath is harmless, removing it on a restart is not."""
        try:
            ds = client.AppsV1Api(self.api).read_namespaced_daemon_set(self.daemonset, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            log.warning(
                "cannot read DaemonSet %s/%s (%s): treating as restart", self.namespace, self.daemonset, exc.status
            )
            return False
        except Exception as exc:
            log.warning("cannot reach the API server (%s): treating as restart", exc)
            return False
        return ds.metadata.deletion_timestamp is not None

    def stopping(self) -> None:
        self.watch.stop()
        if self.uninstalling():
            log.info("DaemonSet %s/%s is gone: uninstalling the datapath", self.namespace, self.daemonset)
            report = cleanup(str(self.datapath.pins.path.parent), self.datapath.cgroup, wait_seconds=5.0)
            log.info(
                "detached %d program(s), unpinned %d generation(s), %d live socket(s) keep their maps",
                report.detached,
                report.unpinned,
                report.live_sockets,
            )
        else:
            log.info("restart: the datapath stays attached and pinned")
