"""The NodeEnrolment status an agent reports: a pure function of what it
knows (health, datapath counters, its last reconcile)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from meshaccel_agent.bringup import DatapathHealth, Reason
from meshaccel_agent.kernel.layout import PASS_BYTE_COUNTERS, PASS_COUNTERS, Counter
from meshaccel_agent.metrics import DatapathSnapshot
from meshaccel_api.conditions import set_condition
from meshaccel_api.v1alpha1 import Condition, NodeEnrolmentStatus, PodProblem, TrafficCounters

#: Degraded reasons that mean "this kernel cannot accelerate".
KERNEL_REASONS = (Reason.SELF_TEST_FAILED, Reason.NO_CGROUP2, Reason.NO_KERNEL_HEADERS)


@dataclass(frozen=True)
class Reconciled:
    """The outcome of the agent's last reconcile of its node object."""

    generation: int = 0
    desired: int = 0
    enrolled: tuple[str, ...] = ()
    problems: tuple[PodProblem, ...] = ()
    at: str | None = None


@dataclass(frozen=True)
class Host:
    kernel: str
    btf: bool
    extra_features: dict[str, bool] = field(default_factory=dict)


def traffic_counters(snap: DatapathSnapshot) -> TrafficCounters:
    if snap.counters is None:
        return TrafficCounters(socketsEnrolled=snap.sockets)
    c = snap.counters
    return TrafficCounters(
        socketsEnrolled=snap.sockets,
        messagesRedirected=c[Counter.REDIR_MSGS],
        bytesRedirected=c[Counter.REDIR_BYTES],
        messagesPassed=sum(c[k] for k in PASS_COUNTERS),
        bytesPassed=sum(c[k] for k in PASS_BYTE_COUNTERS),
    )


def node_status(
    health: DatapathHealth,
    ready: tuple[bool, str],
    snap: DatapathSnapshot,
    done: Reconciled,
    host: Host,
    previous: Iterable[Condition],
    now: str,
) -> NodeEnrolmentStatus:
    gen = done.generation
    is_ready, why = ready
    conds = set_condition(
        previous,
        "Ready",
        "True" if is_ready else "False",
        "Enrolled" if is_ready else (health.degraded_reason or "NotReconciled"),
        why,
        gen,
        now,
    )
    selftest_ok = health.selftest.ok or not health.selftest.passed
    kernel_ok = health.degraded_reason not in KERNEL_REASONS and selftest_ok
    conds = set_condition(
        conds,
        "KernelSupported",
        "True" if kernel_ok else "False",
        "SelfTestPassed" if kernel_ok else (health.degraded_reason or Reason.SELF_TEST_FAILED),
        "" if kernel_ok else health.message,
        gen,
        now,
    )
    conds = set_condition(
        conds,
        "Degraded",
        "True" if health.degraded_reason else "False",
        health.degraded_reason or "AsExpected",
        health.message,
        gen,
        now,
    )
    features = {f"selftest.{k}": v for k, v in health.selftest.passed.items()}
    features["btf"] = host.btf
    features.update(host.extra_features)
    return NodeEnrolmentStatus(
        observedGeneration=gen,
        kernel=host.kernel,
        features=features,
        datapathAttached=health.attached,
        podsDesired=done.desired,
        podsEnrolled=len(done.enrolled),
        enrolledPods=list(done.enrolled[:1024]),
        problems=list(done.problems[:64]),
        counters=traffic_counters(snap),
        lastReconcileTime=done.at,
        conditions=conds,
    )
