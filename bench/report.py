"""Turn raw benchmark samples into medians, spreads, ratios and target verdicts.

Pure functions only: tests/unit/test_bench_report.py checks the structure and
the arithmetic. Every comparison is a ratio of two medians measured in the
same run.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

KERNEL, NOT_ENROLLED, ACCEL, FLOOR = "kernel", "not_enrolled", "accelerated", "af_unix_floor"
CONFIGS = (KERNEL, NOT_ENROLLED, ACCEL, FLOOR)

# For these metrics smaller is better (latency, CPU time).
LOWER_IS_BETTER = {"p50_us", "p90_us", "p99_us", "p999_us", "cpu_us_per_txn"}


@dataclass(frozen=True)
class Sample:
    path: str  # "direct" or "sidecar"
    workload: str  # "latency", "tps", "bulk", "connrate"
    param: int  # message size in bytes, or connections
    config: str
    rep: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Summary:
    path: str
    workload: str
    param: int
    config: str
    metric: str
    median: float
    low: float  # min over repetitions
    high: float  # max over repetitions
    n: int


def summarize(samples: list[Sample]) -> list[Summary]:
    groups: dict[tuple[str, str, int, str, str], list[float]] = defaultdict(list)
    for s in samples:
        for metric, value in s.metrics.items():
            groups[(s.path, s.workload, s.param, s.config, metric)].append(value)
    return [
        Summary(*key, median=statistics.median(v), low=min(v), high=max(v), n=len(v))
        for key, v in sorted(groups.items())
    ]


def lookup(summaries: list[Summary]) -> dict[tuple[str, str, int, str, str], Summary]:
    return {(s.path, s.workload, s.param, s.config, s.metric): s for s in summaries}


def ratio(
    summaries: list[Summary], path: str, workload: str, param: int, metric: str, num: str, den: str
) -> float | None:
    """median(num) / median(den) for one measurement, None if either is missing."""
    table = lookup(summaries)
    a, b = table.get((path, workload, param, num, metric)), table.get((path, workload, param, den, metric))
    if a is None or b is None or b.median == 0:
        return None
    return a.median / b.median


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    threshold: float
    direction: str  # "<=" or ">="

    @property
    def met(self) -> bool:
        if self.value is None:
            return False
        return self.value <= self.threshold if self.direction == "<=" else self.value >= self.threshold


def evaluate_targets(summaries: list[Summary], agent: dict[str, float]) -> list[Target]:
    def r(path: str, workload: str, param: int, metric: str, num: str, den: str) -> float | None:
        return ratio(summaries, path, workload, param, metric, num, den)

    targets = [
        Target(
            "direct 64 B p50: accelerated / kernel", r("direct", "latency", 64, "p50_us", ACCEL, KERNEL), 0.55, "<="
        ),
        Target(
            "direct 64 B p99: accelerated / kernel", r("direct", "latency", 64, "p99_us", ACCEL, KERNEL), 0.55, "<="
        ),
        Target(
            "direct 64 B p50: accelerated / AF_UNIX floor",
            r("direct", "latency", 64, "p50_us", ACCEL, FLOOR),
            1.5,
            "<=",
        ),
        Target(
            "sidecar 1 KiB p50: accelerated / kernel",
            r("sidecar", "latency", 1024, "p50_us", ACCEL, KERNEL),
            0.65,
            "<=",
        ),
        Target(
            "direct bulk 64 KiB: accelerated / kernel",
            r("direct", "bulk", 65536, "gbit_per_s", ACCEL, KERNEL),
            1.4,
            ">=",
        ),
        Target(
            "direct short connections/s: accelerated / kernel",
            r("direct", "connrate", 1, "per_s", ACCEL, KERNEL),
            0.95,
            ">=",
        ),
        Target(
            "direct 64 B CPU per transaction: accelerated / kernel",
            r("direct", "latency", 64, "cpu_us_per_txn", ACCEL, KERNEL),
            0.7,
            "<=",
        ),
    ]
    bulk_sizes = sorted({s.param for s in summaries if s.workload == "bulk" and s.path == "direct"})
    worst_bulk = [r("direct", "bulk", size, "gbit_per_s", ACCEL, KERNEL) for size in bulk_sizes]
    known = [v for v in worst_bulk if v is not None]
    targets.append(
        Target("direct bulk, every size: accelerated / kernel (worst)", min(known) if known else None, 1.0, ">=")
    )
    targets.append(Target("not enrolled / kernel, every workload (worst)", worst_not_enrolled(summaries), 0.98, ">="))
    targets.append(
        Target(
            "not enrolled / kernel, geometric mean over workloads (context)", mean_not_enrolled(summaries), 0.98, ">="
        )
    )
    targets.append(Target("agent steady RSS (MiB)", agent.get("rss_mib_10k_sockets"), 200, "<="))
    targets.append(Target("agent idle CPU (% of a core)", agent.get("idle_cpu_percent"), 1.0, "<="))
    return targets


def _not_enrolled_goodness(summaries: list[Summary]) -> list[float]:
    table = lookup(summaries)
    out = []
    for (path, workload, param, config, metric), s in table.items():
        if config != KERNEL or metric not in ("p50_us", "gbit_per_s", "per_s"):
            continue
        other = table.get((path, workload, param, NOT_ENROLLED, metric))
        if other is None or other.median == 0 or s.median == 0:
            continue
        out.append(s.median / other.median if metric in LOWER_IS_BETTER else other.median / s.median)
    return out


def mean_not_enrolled(summaries: list[Summary]) -> float | None:
    """Geometric mean of the same ratios: run-to-run noise averages out here."""
    values = _not_enrolled_goodness(summaries)
    return statistics.geometric_mean(values) if values else None


def worst_not_enrolled(summaries: list[Summary]) -> float | None:
    """Lowest 'goodness' ratio of not-enrolled vs kernel over every measurement.

    For throughput-like metrics goodness is not_enrolled/kernel; for latency
    and CPU it is kernel/not_enrolled, so 0.98 means 2 % worse either way.
    Only medians (p50, rates) count: tails are too noisy for a 2 % bound.
    """
    values = _not_enrolled_goodness(summaries)
    return min(values) if values else None


def to_json(
    meta: dict[str, Any], samples: list[Sample], agent: dict[str, float], errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    summaries = summarize(samples)
    return {
        "meta": meta,
        "errors": errors or [],
        "samples": [asdict(s) for s in samples],
        "summary": [asdict(s) for s in summaries],
        "targets": [{**asdict(t), "met": t.met} for t in evaluate_targets(summaries, agent)],
        "agent": agent,
    }


_UNITS = {"p50_us": "µs", "p99_us": "µs", "gbit_per_s": "Gbit/s", "per_s": "/s", "cpu_us_per_txn": "µs CPU"}
_TITLES = {
    "latency": "request/response",
    "tps": "HTTP transactions (wrk → nginx)",
    "bulk": "bulk throughput",
    "connrate": "short connections (redis-benchmark -k 0)",
}


def _fmt(s: Summary | None) -> str:
    if s is None:
        return "-"
    spread = f" ({s.low:.3g}..{s.high:.3g})" if s.n > 1 else ""
    return f"{s.median:.3g}{spread}"


def markdown(data: dict[str, Any]) -> str:
    summaries = [Summary(**s) for s in data["summary"]]
    table = lookup(summaries)
    meta = data["meta"]
    lines = [
        f"Run {meta['date']} on {meta['machine']} (kernel {meta['kernel']}, {meta['cpus']} CPUs), "
        f"{meta['mode']} mode, {meta['repetitions']} interleaved repetitions; median (min..max).",
        "",
        "| path | workload | size / conns | metric | kernel | not enrolled | accelerated | AF_UNIX floor "
        "| accel / kernel |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(s.path, s.workload, s.param, s.metric) for s in summaries},
        key=lambda k: (k[0], list(_TITLES).index(k[1]), k[3], k[2]),
    )
    for path, workload, param, metric in keys:
        if metric not in _UNITS:
            continue
        cells = [_fmt(table.get((path, workload, param, c, metric))) for c in CONFIGS]
        rr = ratio(summaries, path, workload, param, metric, ACCEL, KERNEL)
        size = f"{param} conn" if workload == "tps" else ("-" if workload == "connrate" else _size(param))
        rr_text = "-" if rr is None else f"{rr:.2f}"
        row = [path, _TITLES[workload], size, f"{metric} ({_UNITS[metric]})", *cells, rr_text]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| target | measured | threshold | met |", "|---|---|---|---|"]
    for t in data["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        lines.append(
            f"| {t['name']} | {value} | {t['direction']} {t['threshold']} | {'yes' if t['met'] else '**no**'} |"
        )
    if data.get("errors"):
        lines += ["", "Errors seen by the workload tools (these cells have fewer samples):", ""]
        for e in data["errors"]:
            lines.append(
                f"- {e['path']} {e['workload']} {_size(e['param'])} {e['config']} rep {e['rep']}: {e['error']}"
            )
    agent = data["agent"]
    if agent:
        lines += ["", "| agent cost | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in agent.items()]
    return "\n".join(lines) + "\n"


def _size(n: int) -> str:
    return f"{n // (1 << 20)} MiB" if n >= 1 << 20 else (f"{n // 1024} KiB" if n >= 1024 else f"{n} B")
