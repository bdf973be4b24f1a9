"""The operator at scale, objects only: the phases of bench/k8s_scale.py.

A real etcd + kube-apiserver (meshaccel_lab.kube), no kubelet: pods are
created with spec.nodeName set and reported Running through the status
subresource, as kubelets would. Every phase ends with a full listing of the
NodeEnrolments compared with the expectation computed here from what was
created (not from the operator's code), so a fast but wrong operator fails.

bench/k8s_scale.py runs the phases at 100 nodes x 10,000 pods and reports
the speed targets; tests/k8s/test_scale.py runs them small and asserts
correctness only.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshaccel_api.listwatch import ListWatch
from meshaccel_api.v1alpha1 import ACCELERATE_LABEL, ENABLED, GROUP, VERSION, NodeEnrolment
from meshaccel_lab.controlplane import OperatorProcess, install, pod_manifest
from meshaccel_lab.kube import KubeAPI

PLURAL = NodeEnrolment.plural
SHAPES = ("direct", "sidecar")  # what the default policy gives a pod with a sidecar
OPTED_IN_NAMESPACES = 8
MERGE_PATCH = "application/merge-patch+json"  # the client would pick JSON Patch for a dict body
# The targets of the issue.
P99_TARGET_S = 2.0
IDLE_WRITES_TARGET = 0

# (uid, ips, shapes) of one pod in a NodeEnrolment's spec.pods.
Entry = tuple[str, tuple[str, ...], tuple[str, ...]]
# node -> "namespace/name" -> Entry
Enrolments = dict[str, dict[str, Entry]]


class MismatchError(AssertionError):
    """The NodeEnrolments do not hold what the pods call for."""


@dataclass(frozen=True)
class Plan:
    nodes: int = 100
    pods_per_node: int = 100
    churn: int = 200
    deletes: int = 100
    burst: int = 500
    rate: float = 20.0  # pod changes per second in the churn and delete phases
    idle_seconds: float = 30.0
    threads: int = 16
    status_interval: float = 10.0  # the operator's default
    timeout: float = 300.0  # for each wait on the operator
    cold_timeout: float = 900.0  # for its cold start (minutes at 10,000 pods: see the report)
    prefix: str = "scale-"


@dataclass
class Pod:
    namespace: str
    name: str
    node: str
    ip: str
    sidecar: bool
    opted_in: bool
    uid: str = ""
    running: bool = False
    deleted: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def enrolled(self) -> bool:
        """What the `default` policy (spec: {}) calls for."""
        return self.running and not self.deleted and self.sidecar and self.opted_in

    def entry(self) -> Entry:
        return (self.uid, (self.ip,), SHAPES)


# --- numbers ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): always a measured value."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_s": percentile(values, 50),
        "p90_s": percentile(values, 90),
        "p99_s": percentile(values, 99),
        "max_s": max(values, default=math.nan),
        "mean_s": sum(values) / len(values) if values else math.nan,
    }


HISTOGRAM = "meshaccel_operator_node_update_seconds"
PODS_INDEXED = "meshaccel_operator_pods_indexed"
QUEUE_DEPTH = "meshaccel_operator_workqueue_depth"


def histogram_buckets(metrics: dict[str, float]) -> dict[float, float]:
    """le -> cumulative count of the operator's dirty-to-written histogram."""
    out: dict[float, float] = {}
    for sample, value in metrics.items():
        if sample.startswith(HISTOGRAM + "_bucket{"):
            le = sample.split('le="', 1)[1].split('"', 1)[0]
            out[math.inf if le == "+Inf" else float(le)] = value
    return out


def histogram_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The operator's own histogram over one phase: count, mean and the bucket
    bounds that hold p50/p99 (a histogram only knows "at most this bound")."""
    b0, b1 = histogram_buckets(before), histogram_buckets(after)
    cumulative = sorted((le, b1[le] - b0.get(le, 0.0)) for le in b1)
    count = after.get(HISTOGRAM + "_count", 0.0) - before.get(HISTOGRAM + "_count", 0.0)
    total = after.get(HISTOGRAM + "_sum", 0.0) - before.get(HISTOGRAM + "_sum", 0.0)

    def bound(q: float) -> float:
        return next((le for le, n in cumulative if count and n >= q * count), math.nan)

    return {
        "count": count,
        "mean_s": total / count if count else math.nan,
        "p50_le_s": bound(0.5),
        "p99_le_s": bound(0.99),
        "buckets": {("+Inf" if math.isinf(le) else str(le)): n for le, n in cumulative},
    }


def node_writes(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("meshaccel_operator_node_writes_total"))


def policy_status_writes(metrics: dict[str, float]) -> float:
    return metrics.get("meshaccel_operator_policy_status_writes_total", 0.0)


def proc_status_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pods(entries: dict[str, Entry] | None) -> str:
    return "no object" if entries is None else f"an object with {len(entries)} pods"


def diff(expected: Enrolments, actual: Enrolments, limit: int = 5) -> str:
    """A short description of how two views differ."""
    lines = []
    for node in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(node), actual.get(node)
        if want == got:
            continue
        if want is None or got is None:
            lines.append(f"{node}: expected {_pods(want)}, got {_pods(got)}")
            continue
        missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
        wrong = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
        lines.append(f"{node}: missing {missing[:3]}, unexpected {extra[:3]}, wrong entries {wrong[:3]}")
    more = f" (+{len(lines) - limit} more nodes)" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def entries_of(obj: dict[str, Any]) -> dict[str, Entry]:
    pods = (obj.get("spec") or {}).get("pods") or []
    return {
        f"{p['namespace']}/{p['name']}": (p.get("uid", ""), tuple(p.get("ips") or ()), tuple(p.get("shapes") or ()))
        for p in pods
    }


# --- the watch: when did a pod enter or leave its node's object? --------------------------


class EnrolmentWatch:
    """Follows the NodeEnrolments of one run's nodes through the shared
    ListWatch and notes the monotonic time each pod first entered an object's
    spec.pods and first left it. Times are taken when the event arrives, so a
    latency includes the operator's write and the API server's fan-out, as an
    agent watching its node's object would see it."""

    def __init__(self, kube: KubeAPI, node_prefix: str) -> None:
        import functools

        from kubernetes import client

        self.node_prefix = node_prefix
        self._api = kube.api_client()
        custom = client.CustomObjectsApi(self._api)
        list_fn = functools.partial(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
        self.listwatch = ListWatch(list_fn, self._on_list, self._on_event, name="enrolment-watch", timeout_seconds=60)
        self._lock = threading.Lock()
        self._state: Enrolments = {}
        self._rv: dict[str, str] = {}  # node -> resourceVersion of its object
        self.appeared: dict[str, float] = {}
        self.left: dict[str, float] = {}
        self.changes = 0  # events that created, changed or deleted one of our objects
        self.last_change = 0.0
        self.first_change: float | None = None
        self.errors: list[str] = []
        self._listed = threading.Event()

    def start(self) -> None:
        self.listwatch.start()
        if not self._listed.wait(30):
            raise MismatchError("the NodeEnrolment watch could not list")

    def stop(self) -> None:
        self.listwatch.stop()
        self._api.close()

    def snapshot(self) -> Enrolments:
        with self._lock:
            return {node: dict(pods) for node, pods in self._state.items()}

    def resource_versions(self) -> dict[str, str]:
        with self._lock:
            return dict(self._rv)

    def wait_for(self, expected: Enrolments, timeout: float, what: str) -> float:
        """Block until the watched objects equal @expected; returns the
        monotonic time of the event that made them so."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._state == expected:
                    return self.last_change
            if time.monotonic() > deadline:
                raise MismatchError(f"{what}: not reached after {timeout:.0f}s: {diff(expected, self.snapshot())}")
            time.sleep(0.02)

    def _on_list(self, items: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        if self._listed.is_set():  # a re-list after 410: the watch lost events
            self.errors.append("watch expired (410): listed again")
        seen = {o["metadata"]["name"] for o in items}
        for obj in items:
            self._apply("MODIFIED", obj, now)
        for gone in set(self.snapshot()) - seen:
            self._apply("DELETED", {"metadata": {"name": gone}}, now)
        self._listed.set()

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        self._apply(kind, obj, time.monotonic())

    def _apply(self, kind: str, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        if not name.startswith(self.node_prefix):
            return
        new = {} if kind == "DELETED" else entries_of(obj)
        with self._lock:
            old = self._state.get(name, {})
            for key in new.keys() - old.keys():
                self.appeared.setdefault(key, now)
            for key in old.keys() - new.keys():
                self.left.setdefault(key, now)
            if kind == "DELETED":
                self._state.pop(name, None)
                self._rv.pop(name, None)
            else:
                self._state[name] = new
                self._rv[name] = obj["metadata"]["resourceVersion"]
            self.changes += 1
            self.last_change = now
            if self.first_change is None:
                self.first_change = now


class ProcSampler:
    """Every @interval s, a process's CPU seconds and RSS plus a count (here:
    node objects seen), in a thread: what a slow phase was busy with."""

    def __init__(self, pid: int, since: float, count: Callable[[], int], interval: float = 5.0) -> None:
        self.samples: list[dict[str, float]] = []
        self._pid, self._since, self._count, self._interval = pid, since, count, interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                sample = {
                    "t_s": round(time.monotonic() - self._since, 1),
                    "cpu_s": cpu_seconds(self._pid),
                    "rss_mib": round(proc_status_mib(self._pid)["VmRSS"], 1),
                    "objects": self._count(),
                }
            except OSError:  # the process is gone
                return
            self.samples.append(sample)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


# --- the run ----------------------------------------------------------------------


def _read(response: Any) -> bytes:
    """The body of a raw (_preload_content=False) response: reading it all
    hands the connection back to the pool."""
    return bytes(response.data)


def _retrying(call: Callable[[], Any], tries: int = 6) -> Any:
    """An API call, retried on overload (429), server errors and cut connections."""
    from kubernetes.client.exceptions import ApiException

    for attempt in range(tries):
        try:
            return call()
        except ApiException as exc:
            if exc.status not in (0, 429, 500, 502, 503, 504) or attempt == tries - 1:
                raise
        except OSError:
            if attempt == tries - 1:
                raise
        time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


@dataclass
class Timer:
    started: float = field(default_factory=time.monotonic)

    def seconds(self) -> float:
        return time.monotonic() - self.started


class ScaleRun:
    """One run's cluster: its pods (the expectation), a watch on the node
    objects and the operator. Phases are methods returning their figures."""

    def __init__(self, kube: KubeAPI, plan: Plan) -> None:
        self.kube = kube
        self.plan = plan
        self.nodes = [f"{plan.prefix}node-{n:03d}" for n in range(plan.nodes)]
        self.opted_in = [f"{plan.prefix}app-{i}" for i in range(OPTED_IN_NAMESPACES)]
        self.plain = f"{plan.prefix}plain"
        self.pods: dict[str, Pod] = {}
        self.operator: OperatorProcess | None = None
        self.watch: EnrolmentWatch | None = None
        self._ips = self._ip_sequence()
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(plan.threads, thread_name_prefix="k8s-scale")

    # -- plumbing --

    @staticmethod
    def _ip_sequence() -> Iterator[str]:
        # Unique across the run; these addresses only ever live in objects.
        base = ipaddress.IPv4Address("10.128.0.0")
        for i in range(1, 1 << 20):
            yield str(base + i)

    def _core(self) -> Any:
        """A CoreV1Api with one ApiClient (one connection) per thread."""
        from kubernetes import client

        core = getattr(self._local, "core", None)
        if core is None:
            api = self.kube.api_client()
            with self._clients_lock:
                self._clients.append(api)
            core = self._local.core = client.CoreV1Api(api)
        return core

    def _each(self, fn: Callable[[Pod], None], pods: Iterable[Pod]) -> float:
        """@fn on every pod through the thread pool; returns the seconds it took."""
        timer = Timer()
        for _ in self._pool.map(fn, list(pods)):
            pass
        return timer.seconds()

    def _create(self, pod: Pod) -> None:
        manifest = pod_manifest(pod.name, pod.namespace, pod.node, sidecar=pod.sidecar,
                                labels={"app": pod.name.rsplit("-", 1)[0]})  # fmt: skip
        # Raw responses: deserialising into the client's models would cost
        # more CPU than the API server spends on the request.
        resp = _retrying(lambda: self._core().create_namespaced_pod(pod.namespace, manifest, _preload_content=False))
        pod.uid = json.loads(resp.data)["metadata"]["uid"]

    def _mark_running(self, pod: Pod) -> None:
        status = {"status": {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
                             "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
        _retrying(
            lambda: self._core()
            .patch_namespaced_pod_status(pod.name, pod.namespace, status, _preload_content=False,
                                         _content_type=MERGE_PATCH).data
        )  # fmt: skip
        pod.running = True

    def _delete(self, pod: Pod, grace: int | None = None) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            _retrying(lambda: self._core().delete_namespaced_pod(pod.name, pod.namespace,
                                                                 grace_period_seconds=grace,
                                                                 _preload_content=False).data)  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise
        pod.deleted = True

    def _new_pods(self, kind: str, count: int, layout: Callable[[int], tuple[str, bool]]) -> list[Pod]:
        """@count pods spread round-robin over the nodes; @layout(i) gives
        pod i its namespace and whether it has a sidecar."""
        pods = []
        for i in range(count):
            namespace, sidecar = layout(i)
            name = f"{kind}-{i:05d}"
            pod = Pod(namespace, name, self.nodes[i % len(self.nodes)], next(self._ips), sidecar,
                      opted_in=namespace != self.plain)  # fmt: skip
            self.pods[pod.key] = pod
            pods.append(pod)
        return pods

    def _mixed(self, i: int) -> tuple[str, bool]:
        """10% in a namespace that is not opted in, 10% without a sidecar, on
        every node (pod i is the (i // nodes)-th of its node)."""
        on_node = i // len(self.nodes)
        if on_node % 10 == 0:
            return self.plain, True
        return self.opted_in[i % len(self.opted_in)], on_node % 10 != 1

    def _enrollable(self, i: int) -> tuple[str, bool]:
        return self.opted_in[i % len(self.opted_in)], True

    def expected(self) -> Enrolments:
        """Every node with a pod object (even one not enrolled, even a
        terminating one) has an object; it lists the enrolled pods."""
        out: Enrolments = {}
        for pod in self.pods.values():
            pods = out.setdefault(pod.node, {})
            if pod.enrolled:
                pods[pod.key] = pod.entry()
        return out

    def verify(self) -> None:
        """A fresh listing of the NodeEnrolments equals the expectation."""
        from kubernetes import client

        custom = client.CustomObjectsApi(self._core().api_client)
        items = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        actual = {o["metadata"]["name"]: entries_of(o) for o in items if o["metadata"]["name"] in self.nodes}
        expected = self.expected()
        if actual != expected:
            raise MismatchError(f"NodeEnrolments listed: {diff(expected, actual)}")

    def _require_operator(self) -> OperatorProcess:
        if self.operator is None or not self.operator.alive():
            log = self.operator.log()[-3000:] if self.operator else ""
            raise RuntimeError(f"the operator is not running:\n{log}")
        return self.operator

    def _require_watch(self) -> EnrolmentWatch:
        assert self.watch is not None, "start_operator() first"
        return self.watch

    # -- phases --

    def prepare(self) -> None:
        """CRDs and RBAC, the default policy and the namespaces."""
        install(self.kube)
        self.kube.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "AccelerationPolicy",
                         "metadata": {"name": "default"}, "spec": {}})  # fmt: skip
        for namespace in self.opted_in:
            self.kube.ensure_namespace(namespace, {ACCELERATE_LABEL: ENABLED})
        self.kube.ensure_namespace(self.plain, {"team": "not-meshed"})

    def populate(self) -> dict[str, Any]:
        """nodes x pods_per_node pods, all Running with an IP."""
        pods = self._new_pods("pod", self.plan.nodes * self.plan.pods_per_node, self._mixed)
        server_cpu0, own_cpu0 = self._server_cpu(), own_cpu_seconds()
        create_s = self._each(self._create, pods)
        ready_s = self._each(self._mark_running, pods)
        server_cpu, own_cpu = self._server_cpu() - server_cpu0, own_cpu_seconds() - own_cpu0
        wall = create_s + ready_s
        return {
            "pods": len(pods),
            "enrolled": sum(p.enrolled for p in pods),
            "threads": self.plan.threads,
            "create_s": create_s,
            "create_per_s": len(pods) / create_s,
            "mark_running_s": ready_s,
            "mark_running_per_s": len(pods) / ready_s,
            # Who was busy: on 2 vCPUs the API server + etcd and this client
            # share the machine; busy fractions are of one core.
            "apiserver_etcd_cpu_s": server_cpu,
            "client_cpu_s": own_cpu,
            "apiserver_etcd_busy_cores": server_cpu / wall,
            "client_busy_cores": own_cpu / wall,
        }

    def _server_cpu(self) -> float:
        procs = (self.kube.apiserver_proc, self.kube.etcd_proc)
        return sum(cpu_seconds(p.pid) for p in procs if p is not None)

    def start_operator(self, start_timeout: float = 60.0) -> dict[str, Any]:
        """Cold start: the operator meets a cluster that is already full."""
        self.watch = EnrolmentWatch(self.kube, f"{self.plan.prefix}node-")
        self.watch.start()
        self.operator = OperatorProcess(self.kube, status_interval=self.plan.status_interval)
        started = time.monotonic()
        # The wait includes taking the Lease, which a previous operator may
        # hold for up to its 15 s duration (leader.py polls every 5 s).
        self.operator.start(timeout=start_timeout)
        healthy = time.monotonic()
        op = self._require_operator()
        assert op.proc is not None
        sampler = ProcSampler(op.proc.pid, started, lambda: len(self._require_watch().snapshot()))
        try:
            synced = self.watch.wait_for(self.expected(), self.plan.cold_timeout, "cold start")
        finally:
            sampler.stop()
        # The watch can see a write land before the operator has counted it
        # (the counter moves when the API call returns to the operator's
        # event loop): read the counter once the writer is idle.
        self.wait_writer_idle()
        at_sync = {"writes": op.writes(), "cpu_s": cpu_seconds(op.proc.pid), **proc_status_mib(op.proc.pid)}
        changes_at_sync = self._require_watch().changes
        self.verify()
        time.sleep(2)  # anything still queued would show as extra writes
        first = self.watch.first_change
        return {
            "healthy_s": healthy - started,
            "first_node_object_s": (first - started) if first is not None else math.nan,
            "synced_s": synced - started,
            "synced_after_healthy_s": synced - healthy,
            "writes": at_sync["writes"],
            "writes_2s_later": op.writes(),
            "api_changes": changes_at_sync,
            "api_changes_2s_later": self._require_watch().changes,
            "nodes": len(self.nodes),
            "operator_cpu_s": at_sync["cpu_s"],
            "rss_mib": at_sync["VmRSS"],
            "hwm_mib": at_sync["VmHWM"],
            "timeline": sampler.samples,
        }

    def wait_writer_idle(self) -> None:
        """Until the operator's writer has nothing queued or in flight."""
        op = self._require_operator()
        deadline = time.monotonic() + self.plan.timeout
        while op.metrics().get(QUEUE_DEPTH, 1.0) != 0.0:
            if time.monotonic() > deadline:
                raise MismatchError(f"the operator's writer did not go idle in {self.plan.timeout:.0f}s")
            time.sleep(0.05)

    def _create_unready(self, pods: list[Pod]) -> float:
        """Create @pods (Pending, no IP) and wait until the operator has seen
        them all and made its pass over their nodes, so that these events,
        which change no enrolment, are not mixed into the changes timed next.
        Returns the node writes they caused (0 expected)."""
        op = self._require_operator()
        before = op.metrics()
        self._each(self._create, pods)
        target = before.get(PODS_INDEXED, 0.0) + len(pods)
        deadline = time.monotonic() + self.plan.timeout
        while op.metrics().get(PODS_INDEXED, 0.0) < target:
            if time.monotonic() > deadline:
                raise MismatchError(f"the operator did not index {len(pods)} new pods in {self.plan.timeout:.0f}s")
            time.sleep(0.05)
        time.sleep(0.5)  # the writer's debounce (50 ms) and one pass
        self._require_watch().wait_for(self.expected(), self.plan.timeout, "pending pods (nothing to enrol)")
        return node_writes(op.metrics()) - node_writes(before)

    def churn(self) -> dict[str, Any]:
        """New pods (created not ready) turn Running one at a time."""
        pods = self._new_pods("churn", self.plan.churn, self._enrollable)
        writes = self._create_unready(pods)
        result = self._one_at_a_time(pods, self._mark_running, self._require_watch().appeared, "churn")
        return result | {"writes_for_unready_creates": writes}

    def delete_some(self) -> dict[str, Any]:
        """Enrolled pods deleted one at a time, spread over the nodes."""
        by_node: dict[str, list[Pod]] = {}
        for pod in self.pods.values():
            if pod.enrolled and pod.name.startswith("pod-"):
                by_node.setdefault(pod.node, []).append(pod)
        # Round-robin over the nodes: pod 0 of each node, then pod 1, ...
        rounds = zip(*by_node.values(), strict=False)
        victims = [pod for round_ in rounds for pod in round_][: self.plan.deletes]
        return self._one_at_a_time(victims, self._delete, self._require_watch().left, "deletes")

    def _one_at_a_time(
        self, pods: list[Pod], change: Callable[[Pod], None], seen: dict[str, float], what: str
    ) -> dict[str, Any]:
        """@change each pod at the plan's rate; latency = when the watch saw
        the pod enter/leave its node's object - just before the call."""
        op, watch = self._require_operator(), self._require_watch()
        metrics0 = op.metrics()
        changed_at: dict[str, float] = {}
        start = time.monotonic()
        for i, pod in enumerate(pods):
            time.sleep(max(0.0, start + i / self.plan.rate - time.monotonic()))
            changed_at[pod.key] = time.monotonic()
            change(pod)
        last_change = time.monotonic()
        done = watch.wait_for(self.expected(), self.plan.timeout, what)
        metrics1 = op.metrics()
        self.verify()
        latencies = [seen[key] - at for key, at in changed_at.items()]
        return self._rates(pods, start, last_change, done, metrics0, metrics1) | {
            "latency": latency_summary(latencies),
            "operator_histogram": histogram_delta(metrics0, metrics1),
        }

    @staticmethod
    def _rates(
        pods: list[Pod], start: float, last_change: float, done: float, m0: dict[str, float], m1: dict[str, float]
    ) -> dict[str, Any]:
        writes = node_writes(m1) - node_writes(m0)
        return {
            "pod_changes": len(pods),
            "nodes_touched": len({p.node for p in pods}),
            "changes_s": last_change - start,
            "pod_changes_per_s": len(pods) / max(last_change - start, 1e-9),
            "until_all_seen_s": done - start,
            "writes": writes,
            "writes_per_s": writes / max(done - start, 1e-9),
            "writes_per_pod_change": writes / len(pods) if pods else math.nan,
        }

    def burst(self) -> dict[str, Any]:
        """Many pods turn Running at once (a big rollout): writes coalesce."""
        pods = self._new_pods("burst", self.plan.burst, self._enrollable)
        writes = self._create_unready(pods)
        op, watch = self._require_operator(), self._require_watch()
        metrics0 = op.metrics()
        changed_at: dict[str, float] = {}

        def ready(pod: Pod) -> None:
            changed_at[pod.key] = time.monotonic()
            self._mark_running(pod)

        start = time.monotonic()
        self._each(ready, pods)
        last_change = time.monotonic()
        done = watch.wait_for(self.expected(), self.plan.timeout, "burst")
        metrics1 = op.metrics()
        self.verify()
        latencies = [watch.appeared[key] - at for key, at in changed_at.items()]
        return self._rates(pods, start, last_change, done, metrics0, metrics1) | {
            "latency": latency_summary(latencies),
            "operator_histogram": histogram_delta(metrics0, metrics1),
            "writes_for_unready_creates": writes,
        }

    def idle(self) -> dict[str, Any]:
        """Nothing that matters changes: no NodeEnrolment may be written."""
        op, watch = self._require_operator(), self._require_watch()
        # One status interval first, so the policy status has caught up with
        # the phases before (a write then would be a real change, not idling).
        time.sleep(self.plan.status_interval + 1)
        metrics0, rv0, changes0 = op.metrics(), watch.resource_versions(), watch.changes
        start = time.monotonic()
        noops = self._noop_events()
        time.sleep(max(0.0, start + self.plan.idle_seconds - time.monotonic()))
        metrics1, rv1, changes1 = op.metrics(), watch.resource_versions(), watch.changes
        self.verify()
        assert op.proc is not None
        return {
            "seconds": time.monotonic() - start,
            "noop_events": noops,
            "node_writes": node_writes(metrics1) - node_writes(metrics0),
            "resource_version_changes": sum(rv0.get(n) != rv for n, rv in rv1.items()) + len(rv0.keys() - rv1.keys()),
            "watch_events": changes1 - changes0,
            "policy_status_writes": policy_status_writes(metrics1) - policy_status_writes(metrics0),
            "rss_mib": proc_status_mib(op.proc.pid)["VmRSS"],
            "hwm_mib": proc_status_mib(op.proc.pid)["VmHWM"],
        }

    def _noop_events(self) -> list[str]:
        """Events the operator sees but that change no node's enrolment."""
        enrolled = next(p for p in self.pods.values() if p.enrolled)
        plain = next(p for p in self.pods.values() if p.namespace == self.plain and not p.deleted)
        core = self._core()
        _read(core.patch_namespaced_pod(plain.name, plain.namespace, {"metadata": {"labels": {"touched": "1"}}},
                                        _preload_content=False, _content_type=MERGE_PATCH))  # fmt: skip
        _read(core.patch_namespaced_pod(enrolled.name, enrolled.namespace, {"metadata": {"labels": {"version": "2"}}},
                                        _preload_content=False, _content_type=MERGE_PATCH))  # fmt: skip
        # A kubelet-style status heartbeat: same phase, IP and readiness.
        self._mark_running(enrolled)
        _read(core.patch_namespace(self.opted_in[0], {"metadata": {"annotations": {"touched": "1"}}},
                                   _preload_content=False, _content_type=MERGE_PATCH))  # fmt: skip
        _read(core.patch_namespace(self.plain, {"metadata": {"labels": {"team": "still-not-meshed"}}},
                                   _preload_content=False, _content_type=MERGE_PATCH))  # fmt: skip
        return [
            f"label pod {plain.key} (namespace not opted in)",
            f"label pod {enrolled.key} (enrolled)",
            f"status heartbeat of {enrolled.key}",
            f"annotate namespace {self.opted_in[0]}",
            f"relabel namespace {self.plain} (still not opted in)",
        ]

    def remove_all(self) -> None:
        """Force-delete every pod of the run and wait until the operator has
        deleted the run's node objects (for a shared API server)."""
        pods = [p for p in self.pods.values()]
        self._each(lambda p: self._delete(p, grace=0), pods)
        self.pods.clear()
        if self.watch is not None and self.operator is not None and self.operator.alive():
            self.watch.wait_for({}, self.plan.timeout, "node objects removed")

    def operator_summary(self) -> dict[str, Any]:
        op = self._require_operator()
        assert op.proc is not None
        m = op.metrics()
        return {
            "writes_by_operation": {
                k.split('"')[1]: v for k, v in m.items() if k.startswith("meshaccel_operator_node_writes_total")
            },
            "write_errors": m.get("meshaccel_operator_write_errors_total", 0.0),
            "cpu_s": cpu_seconds(op.proc.pid),
            **{k.lower(): v for k, v in proc_status_mib(op.proc.pid).items()},
        }

    def close(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        if self.operator is not None:
            self.operator.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for api in self._clients:
            api.close()


# --- report -----------------------------------------------------------------------
