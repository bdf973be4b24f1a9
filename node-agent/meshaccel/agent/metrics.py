"""Prometheus metrics, read from the BPF maps at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshaccel.agent.layout import Counter

_PASS_REASONS = {
    "native": Counter.PASS_NATIVE,  # the pair settled on the kernel stack
    "peer_gone": Counter.PASS_PEER_GONE,  # the peer socket already closed
    "no_state": Counter.PASS_NO_STATE,  # socket in the map without state
    "shutdown": Counter.PASS_SHUTDOWN,  # write after shutdown(SHUT_WR): EPIPE
}
_REFUSAL_REASONS = {
    "exists": Counter.REFUSED_EXISTS,
    "sockhash_full": Counter.REFUSED_FULL,
    "pairs_full": Counter.REFUSED_PAIRS_FULL,
    "pair_mismatch": Counter.PAIR_MISMATCH,
}


class DatapathCollector(Collector):
    """Reads the datapath on every scrape; no background polling."""

    def __init__(self, source: Callable[[], DatapathSnapshot | None]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snap = self._source()
        attached = GaugeMetricFamily("meshaccel_datapath_attached", "1 when the datapath programs are attached")
        attached.add_metric([], 1.0 if snap and snap.attached else 0.0)
        yield attached
        endpoints = GaugeMetricFamily("meshaccel_endpoints_enrolled", "Network namespaces enrolled for acceleration")
        endpoints.add_metric([], float(snap.endpoints if snap else 0))
        yield endpoints
        if snap is None:
            return
        c = snap.counters
        enrolled = GaugeMetricFamily("meshaccel_sockets_enrolled", "Sockets currently in the redirect map")
        enrolled.add_metric([], float(snap.sockets))
        yield enrolled
        yield _counter(
            "meshaccel_sockets_enrolled_total",
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
        passed = CounterMetricFamily(
            "meshaccel_passed_messages",
            "Messages of enrolled sockets sent through the kernel stack, by reason",
            labels=["reason"],
        )
        for reason, idx in _PASS_REASONS.items():
            passed.add_metric([reason], float(c[idx]))
        yield passed
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
        load = GaugeMetricFamily("meshaccel_datapath_load_seconds", "Time to compile, load and attach the datapath")
        load.add_metric([], snap.load_seconds)
        yield load


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    m = CounterMetricFamily(name.removesuffix("_total"), doc)
    m.add_metric([], float(value))
    return m


class DatapathSnapshot:
    def __init__(
        self, attached: bool, endpoints: int, sockets: int, counters: dict[Counter, int], load_seconds: float
    ) -> None:
        self.attached = attached
        self.endpoints = endpoints
        self.sockets = sockets
        self.counters = counters
        self.load_seconds = load_seconds
