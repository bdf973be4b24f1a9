"""Prometheus metrics, read from the BPF maps at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshaccel_agent.bringup import Reason
from meshaccel_agent.kernel.layout import PASS_REASONS, Counter

DEGRADED_REASONS = tuple(v for k, v in vars(Reason).items() if k.isupper())

_REFUSAL_REASONS = {
    "exists": Counter.REFUSED_EXISTS,
    "sockhash_full": Counter.REFUSED_FULL,
    "pairs_full": Counter.REFUSED_PAIRS_FULL,
    "flows_full": Counter.REFUSED_FLOWS_FULL,
    "pair_mismatch": Counter.PAIR_MISMATCH,
}


class DatapathCollector(Collector):
    """Reads the datapath on every scrape; no background polling."""

    def __init__(self, source: Callable[[], DatapathSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snap = self._source()
        yield _gauge("meshaccel_datapath_attached", "1 when the datapath programs are attached", snap.attached)
        yield _gauge("meshaccel_netns_enrolled", "Network namespaces enrolled for acceleration", snap.endpoints)
        yield _gauge(
            "meshaccel_netns_refused",
            "Network namespaces left on kernel TCP because an enrolment map is full",
            snap.endpoints_refused,
        )
        yield _counter("meshaccel_reconciles_total", "Successful reconciles of the enrolment maps", snap.reconciles)
        yield _counter(
            "meshaccel_config_errors_total", "Enrolment files refused (the last good one stays)", snap.config_errors
        )
        degraded = GaugeMetricFamily(
            "meshaccel_degraded", "1 while acceleration is off for the given reason", labels=["reason"]
        )
        # Every reason, 0 or 1: a series that exists while all is well lets
        # dashboards and alerts tell "not degraded" from "not scraped".
        for reason in sorted({*DEGRADED_REASONS, *([snap.degraded_reason] if snap.degraded_reason else [])}):
            degraded.add_metric([reason], 1.0 if reason == snap.degraded_reason else 0.0)
        yield degraded
        selftest = GaugeMetricFamily(
            "meshaccel_selftest_passed", "Kernel self-test results (1 passed)", labels=["check"]
        )
        for check, ok in sorted(snap.selftest.items()):
            selftest.add_metric([check], 1.0 if ok else 0.0)
        yield selftest
        yield _gauge(
            "meshaccel_selftest_overridden",
            "1 when running despite a failed self-test (--ignore-selftest)",
            snap.overridden,
        )
        if snap.counters is None:
            return
        c = snap.counters
        yield _gauge("meshaccel_sockets_enrolled", "Sockets currently in the redirect map", snap.sockets)
        yield _counter(
            "meshaccel_socket_enrolments_total",
            "Sockets ever inserted into the redirect map",
            c[Counter.SOCKETS_ENROLLED],
        )
        yield _counter("meshaccel_pairs_total", "Connections whose two ends were paired", c[Counter.PAIRS])
        yield _counter(
            "meshaccel_redirected_messages_total", "sendmsg chunks redirected to the peer socket", c[Counter.REDIR_MSGS]
        )
        yield _counter(
            "meshaccel_redirected_bytes_total", "Bytes redirected to the peer socket", c[Counter.REDIR_BYTES]
        )
        yield _counter(
            "meshaccel_stack_read_bytes_total",
            "Bytes the readers of paired connections read from the TCP stack (flow control, half-close, "
            "uninstall); counted at the reader, exact",
            c[Counter.STACK_READ_BYTES],
        )
        yield _counter(
            "meshaccel_fins_held_total",
            "Peer FINs refused until the reader had read the bytes redirected to it, because bytes that took "
            "the stack were queued behind them (the sender retransmits the FIN)",
            c[Counter.FIN_HELD],
        )
        passed = CounterMetricFamily(
            "meshaccel_passed_messages",
            "Messages of enrolled sockets sent through the kernel stack, by reason",
            labels=["reason"],
        )
        passed_bytes = CounterMetricFamily(
            "meshaccel_passed_bytes",
            "Bytes of enrolled sockets sent through the kernel stack, by reason",
            labels=["reason"],
        )
        for reason, (msgs, nbytes) in PASS_REASONS.items():
            passed.add_metric([reason], float(c[msgs]))
            passed_bytes.add_metric([reason], float(c[nbytes]))
        yield passed
        yield passed_bytes
        switches = CounterMetricFamily(
            "meshaccel_flow_control_switches",
            "Connection directions switched by flow control: to the stack (the reader owes the bound) "
            "or back to redirect (it caught up)",
            labels=["to"],
        )
        switches.add_metric(["stack"], float(c[Counter.FLOW_SPILLS]))
        switches.add_metric(["redirect"], float(c[Counter.FLOW_RESUMES]))
        yield switches
        half_close = CounterMetricFamily(
            "meshaccel_half_closes",
            "Sockets that shut their sending side: left the sockhash (reads become plain TCP), or kept "
            "(data or a send was in flight)",
            labels=["outcome"],
        )
        half_close.add_metric(["left"], float(c[Counter.HALF_CLOSE_UNENROLLED]))
        half_close.add_metric(["kept"], float(c[Counter.HALF_CLOSE_KEPT]))
        yield half_close
        refused = CounterMetricFamily(
            "meshaccel_insert_refusals", "Sockets or handshakes not enrolled, by reason", labels=["reason"]
        )
        for reason, idx in _REFUSAL_REASONS.items():
            refused.add_metric([reason], float(c[idx]))
        yield refused
        yield _counter(
            "meshaccel_pairs_settled_native_total",
            "Pairs left on the kernel stack because the client sent before the server enrolled",
            c[Counter.PAIR_RACE_NATIVE],
        )
        yield _gauge(
            "meshaccel_datapath_load_seconds", "Time to adopt or compile and load the datapath", snap.load_seconds
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    m = GaugeMetricFamily(name, doc)
    m.add_metric([], float(value))
    return m


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    m = CounterMetricFamily(name.removesuffix("_total"), doc)
    m.add_metric([], float(value))
    return m


@dataclass
class DatapathSnapshot:
    attached: bool = False
    endpoints: int = 0
    endpoints_refused: int = 0
    reconciles: int = 0
    config_errors: int = 0
    degraded_reason: str = ""
    selftest: dict[str, bool] = field(default_factory=dict)
    overridden: bool = False
    sockets: int = 0
    counters: dict[Counter, int] | None = None
    load_seconds: float = 0.0
