"""Kubernetes mode: the agent of one node.

It watches one object (its node's NodeEnrolment, by name), resolves each
listed pod to its network namespace, reconciles the datapath, and writes the
object's status: within `min_interval` when the enrolment or health changed,
and otherwise only when the counters moved, checked every `status_interval`.
An idle node writes nothing.

At SIGTERM it asks the API server whether its own DaemonSet still exists and
is not being deleted: yes means a restart or rolling update (keep the
datapath attached and pinned, connections keep their acceleration); no means
uninstall (detach and unpin).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from meshaccel_agent.datapath.datapath import Datapath
from meshaccel_agent.datapath.uninstall import cleanup
from meshaccel_agent.kubernetes.desired import desired_from
from meshaccel_agent.kubernetes.node_object import NodeObjectWatch
from meshaccel_agent.kubernetes.status import Host, Reconciled, node_status
from meshaccel_agent.runner import AgentRunner
from meshaccel_api.agent_settings import AgentSettings
from meshaccel_api.conditions import now_rfc3339
from meshaccel_api.v1alpha1 import GROUP, VERSION, NodeEnrolment, NodeEnrolmentStatus

log = logging.getLogger(__name__)


def kubernetes_metrics(registry: CollectorRegistry) -> tuple[PromCounter, PromCounter]:
    """The metrics only an agent in a cluster has: status writes, node lists."""
    status_writes = PromCounter(
        "meshaccel_status_writes", "Writes of this node's NodeEnrolment status", registry=registry
    )
    watch_lists = PromCounter(
        "meshaccel_node_watch_lists",
        "Full lists of the node object (start and expired watches; a broken watch resumes instead)",
        registry=registry,
    )
    return status_writes, watch_lists


class KubernetesAgent(AgentRunner):
    def __init__(
        self,
        datapath: Datapath,
        api: client.ApiClient,
        settings: AgentSettings,
        cgroup_root: Path,
        min_interval: float = 1.0,
        poll_seconds: float = 0.2,
    ) -> None:
        super().__init__(datapath, settings, poll_seconds)
        self.api = api
        self.node, self.namespace, self.daemonset = settings.node_name, settings.namespace, settings.daemonset
        self.cgroup_root = cgroup_root
        self.status_interval = settings.status_interval
        self.min_interval = min_interval
        self.watch = NodeObjectWatch(api, self.node)
        self.host = Host(kernel=os.uname().release, btf=os.path.exists("/sys/kernel/btf/vmlinux"))
        self._done = Reconciled()
        self._reported: NodeEnrolmentStatus | None = None
        self._checked_at = 0.0
        self._status_dirty = True  # enrolment or health changed since the last status
        self.status_writes, self.watch_lists = kubernetes_metrics(self.registry)
        self._lists_seen = 0

    def run(self) -> None:
        self.watch.start()
        super().run()

    # -- enrolment -------------------------------------------------------------

    def tick(self, count: int) -> None:
        if self.watch.relists > self._lists_seen:
            self.watch_lists.inc(self.watch.relists - self._lists_seen)
            self._lists_seen = self.watch.relists
        # Re-resolve every few seconds while pods are refused: a pod's
        # processes appear some time after the API server lists the pod.
        retry = count % 25 == 24 and bool(self._done.problems)
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
        done = Reconciled(generation, len(spec.pods), tuple(enrolled), tuple(problems), self._done.at)
        if done != self._done or done.at is None:
            done = dataclasses.replace(done, at=now_rfc3339())
            self._status_dirty = True
            for p in problems:
                log.warning("pod %s not enrolled (%s): %s", p.pod, p.reason, p.message)
        self._done = done

    # -- status ----------------------------------------------------------------

    def build_status(self) -> NodeEnrolmentStatus:
        previous = self._reported.conditions if self._reported else []
        return node_status(self.health, self.ready(), self.snapshot(), self._done, self.host, previous, now_rfc3339())

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

    def idle_tick(self) -> None:
        self.report_status()  # the Degraded condition says why nothing is enrolled

    def on_degraded(self) -> None:
        """A Warning Event on this agent's pod: `kubectl describe` and
        `kubectl get events` show why the node stays on kernel TCP."""
        pod = os.environ.get("POD_NAME")
        if not pod:
            return
        now = now_rfc3339()
        event = {
            "metadata": {"generateName": f"{pod}.", "namespace": self.namespace},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": self.namespace, "apiVersion": "v1"},
            "reason": self.health.degraded_reason,
            "message": f"acceleration is off on node {self.node}, traffic stays on kernel TCP: {self.health.message}",
            "type": "Warning",
            "source": {"component": "meshaccel-agent", "host": self.node},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            client.CoreV1Api(self.api).create_namespaced_event(self.namespace, event)
        except Exception as exc:
            log.warning("could not post the degraded Event: %s", exc)

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
            # Within the pod's grace period (30 s): readers get that long to
            # read what was redirected to them before their sockets move to TCP.
            report = cleanup(str(self.datapath.pins.path.parent), self.datapath.cgroup, wait_seconds=20.0)
            log.info(
                "detached %d program(s), moved %d socket(s) to TCP, unpinned %d generation(s); %d socket(s) "
                "still wait for their reader (their maps stay pinned)",
                report.detached,
                report.moved_to_tcp,
                report.unpinned,
                report.live_sockets,
            )
        else:
            log.info("restart: the datapath stays attached and pinned")
