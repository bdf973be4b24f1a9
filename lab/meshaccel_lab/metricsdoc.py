"""docs/monitoring.md's metrics table, generated from the code that exports them.

    python -m meshaccel_lab.metricsdoc          rewrite the table in docs/monitoring.md
    python -m meshaccel_lab.metricsdoc --check  fail if it differs (make lint)

Every family is collected from the real collectors: the agent's datapath
collector over a snapshot that has every counter, its cluster metrics, and
the operator's module-level metrics, so a metric added, renamed or
re-documented in the code shows up here or fails CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
BEGIN, END = "<!-- metrics-table:begin (make generate) -->", "<!-- metrics-table:end -->"


def agent_families() -> list[Metric]:
    from meshaccel_agent.kernel.layout import Counter
    from meshaccel_agent.kubernetes.agent import kubernetes_metrics
    from meshaccel_agent.metrics import DatapathCollector, DatapathSnapshot
    from meshaccel_api.buildinfo import register_build_info

    snapshot = DatapathSnapshot(
        attached=True, degraded_reason="Reason", selftest={"redirect": True}, counters=dict.fromkeys(Counter, 0)
    )
    registry = CollectorRegistry()
    registry.register(DatapathCollector(lambda: snapshot))
    register_build_info("agent", "meshaccel-agent", registry)
    kubernetes_metrics(registry)
    return list(registry.collect())


def operator_families() -> list[Metric]:
    """The operator's metrics are module-level objects on the default
    registry; a labelled one has no samples until it is used, so each gets
    one child here (its label names are the objects' `_labelnames`)."""
    import meshaccel_operator.handlers.policies as policies
    import meshaccel_operator.main as main
    import meshaccel_operator.podindex as podindex
    import meshaccel_operator.writer as writer

    for module in (policies, main, podindex, writer):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase) and value._labelnames:
                value.labels(*("-" for _ in value._labelnames))
    return [m for m in REGISTRY.collect() if m.name.startswith("meshaccel_operator_")]


def exposed_name(m: Metric) -> str:
    return f"{m.name}_total" if m.type == "counter" else f"{m.name}_info" if m.type == "info" else m.name


def labels(m: Metric) -> str:
    """Label names; with their values where the code fixes them (a family
    that exports one series per value)."""
    values: dict[str, list[str]] = {}
    series = [s for s in m.samples if not s.name.endswith("_created")]
    for sample in series:
        for k, v in sample.labels.items():
            if k != "le" and v not in values.setdefault(k, []):
                values[k].append(v)
    if not values:
        return "—"
    fixed = len(series) > 1 and m.type == "counter"
    return "; ".join(f"`{k}`: {', '.join(vs)}" if fixed else f"`{k}`" for k, vs in values.items())


def table() -> str:
    rows = ["| metric | type | labels | from | meaning |", "|---|---|---|---|---|"]
    for source, families in (("agent", agent_families()), ("operator", operator_families())):
        for m in sorted(families, key=exposed_name):
            label_text = labels(m)
            kind = "gauge (info)" if m.type == "info" else m.type
            rows.append(f"| `{exposed_name(m)}` | {kind} | {label_text} | {source} | {m.documentation} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{DOC}: the markers {BEGIN!r} and {END!r} are missing")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshaccel_lab.metricsdoc", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="fail if docs/monitoring.md's table is not what the code says"
    )
    args = parser.parse_args(argv)
    current = DOC.read_text()
    wanted = render(current)
    if args.check:
        if current != wanted:
            print(f"{DOC}: the metrics table is stale: run `make generate`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
