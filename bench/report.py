"""Turn raw benchmark samples into medians, spreads, ratios and target verdicts.

Pure functions only: tests/unit/test_bench_report.py checks the structure and
the arithmetic. Every comparison is a ratio of two medians measured in the
same run.
"""

from __future__ import annotations

import random
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
    for path in ("direct", "sidecar"):
        sizes = sorted({s.param for s in summaries if s.workload == "bulk" and s.path == path})
        known = [v for v in (r(path, "bulk", n, "gbit_per_s", ACCEL, KERNEL) for n in sizes) if v is not None]
        targets.append(
            Target(f"{path} bulk, every size: accelerated / kernel (worst)", min(known) if known else None, 1.0, ">=")
        )
    targets.append(
        Target(
            "sidecar bulk 64 KiB: accelerated / kernel",
            r("sidecar", "bulk", 65536, "gbit_per_s", ACCEL, KERNEL),
            1.4,
            ">=",
        )
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


@dataclass(frozen=True)
class Paired:
    """Not enrolled vs kernel for one cell, from back-to-back pairs of runs
    (order alternating): the median of the per-pair goodness ratios and a
    bootstrap 95 % interval of that median. Pairing cancels the drift of a
    shared VM between two configurations measured minutes apart."""

    path: str
    workload: str
    param: int
    metric: str
    goodness: float  # > 1: not enrolled is better; 0.98: 2 % worse
    low: float
    high: float
    n: int


def _bootstrap_median(values: list[float], rounds: int = 2000, seed: int = 7) -> tuple[float, float]:
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def paired(samples: list[Sample]) -> list[Paired]:
    """Cells of samples taken in pairs: rep i of KERNEL and of NOT_ENROLLED."""
    runs: dict[tuple[str, str, int, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for s in samples:
        for metric, value in s.metrics.items():
            if metric in ("p50_us", "gbit_per_s", "per_s", "cpu_us_per_txn"):
                runs[(s.path, s.workload, s.param, metric)][s.config][s.rep] = value
    out = []
    for (path, workload, param, metric), by_config in sorted(runs.items()):
        kernel, other = by_config.get(KERNEL, {}), by_config.get(NOT_ENROLLED, {})
        ratios = []
        for rep in sorted(kernel.keys() & other.keys()):
            k, o = kernel[rep], other[rep]
            if k > 0 and o > 0:
                ratios.append(k / o if metric in LOWER_IS_BETTER else o / k)
        if ratios:
            low, high = _bootstrap_median(ratios)
            out.append(Paired(path, workload, param, metric, statistics.median(ratios), low, high, len(ratios)))
    return out


#: The metrics the not-enrolled targets judge: medians and rates. CPU per
#: transaction comes from the whole machine's busy time, tails are tails.
OVERHEAD_METRICS = ("p50_us", "gbit_per_s", "per_s")


def overhead_targets(cells: list[Paired]) -> list[Target]:
    """The worst cell and the geometric mean of the paired medians, and the
    widest 95 % interval: a cell whose interval is wider than 0.98..1.02
    could hide a 2 % cost, so that target says whether the measurement is
    tight enough for the other two to mean anything."""
    judged = [c for c in cells if c.metric in OVERHEAD_METRICS]
    if not judged:
        return []
    widest = max(judged, key=lambda c: c.high - c.low)
    return [
        Target("not enrolled / kernel, every workload (worst cell)", min(c.goodness for c in judged), 0.98, ">="),
        Target(
            "not enrolled / kernel, geometric mean over workloads",
            statistics.geometric_mean([c.goodness for c in judged]),
            0.99,
            ">=",
        ),
        Target(
            f"not enrolled / kernel: widest 95 % interval, half-width ({widest.path} {widest.workload} {widest.param})",
            (widest.high - widest.low) / 2,
            0.02,
            "<=",
        ),
    ]


@dataclass(frozen=True)
class HookCost:
    """What the attached programs (@hooks: one program's name, or
    NOT_ENROLLED for all of them) add to one operation of traffic that is
    not enrolled: the median over the repetitions of (with them - kernel) ns
    per operation, its 95 % bootstrap interval, and that median as a share of
    the operation's kernel cost."""

    op: str
    hooks: str
    kernel_ns: float
    added_ns: float
    low_ns: float
    high_ns: float
    share: float
    n: int


def hook_costs(samples: list[Sample]) -> list[HookCost]:
    runs: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for s in samples:
        runs[s.workload][s.config][s.rep] = s.metrics["ns_per_op"]
    out = []
    for op, by_config in sorted(runs.items()):
        kernel = by_config.get(KERNEL, {})
        # Each program alone first, all of them (NOT_ENROLLED) last.
        for hooks in sorted(set(by_config) - {KERNEL}, key=lambda h: (h == NOT_ENROLLED, h)):
            other = by_config[hooks]
            reps = sorted(kernel.keys() & other.keys())
            if not reps:
                continue
            deltas = [other[r] - kernel[r] for r in reps]
            base = statistics.median(kernel[r] for r in reps)
            low, high = _bootstrap_median(deltas)
            added = statistics.median(deltas)
            out.append(HookCost(op, hooks, base, added, low, high, added / base, len(reps)))
    return out


_HOOK_TITLES = {"pingpong": "one loopback write + read", "connect": "one loopback connection (connect, accept, close)"}


def hook_targets(costs: list[HookCost]) -> list[Target]:
    return [
        Target(f"hook cost, {_HOOK_TITLES.get(c.op, c.op)}: share of its kernel cost", c.share, 0.02, "<=")
        for c in costs
        if c.hooks == NOT_ENROLLED
    ]


def slow_reader_targets(slow: dict[str, dict[str, float]], bound: int, write: int) -> list[Target]:
    accel = slow.get(ACCEL, {})
    return [
        Target(
            "slow reader: receive side beyond TCP's buffer, accelerated (bytes) <= bound + one write",
            accel.get("beyond_rcvbuf_bytes"),
            bound + write,
            "<=",
        ),
        Target("slow reader: errors seen by the writer, accelerated", accel.get("errors"), 0, "<="),
    ]


def to_json(
    meta: dict[str, Any],
    samples: list[Sample],
    agent: dict[str, float],
    errors: list[dict[str, Any]] | None = None,
    overhead: list[Sample] | None = None,
    slow: dict[str, dict[str, float]] | None = None,
    hooks: list[Sample] | None = None,
    hook_runs: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    summaries = summarize(samples)
    cells = paired(overhead or [])
    targets = evaluate_targets(summaries, agent)
    if cells:
        # The paired runs measure "not enrolled" far more tightly than the
        # interleaved repetitions of the main table: they decide the targets.
        targets = [t for t in targets if not t.name.startswith("not enrolled")] + overhead_targets(cells)
    costs = hook_costs(hooks or [])
    targets += hook_targets(costs)
    if slow:
        targets += slow_reader_targets(slow, int(meta.get("flow_bound", 0)), int(meta.get("slow_write", 0)))
    return {
        "meta": meta,
        "errors": errors or [],
        "samples": [asdict(s) for s in samples],
        "summary": [asdict(s) for s in summaries],
        "overhead": [asdict(c) for c in cells],
        "overhead_samples": [asdict(s) for s in overhead or []],
        "slow_reader": slow or {},
        "hook_cost": [asdict(c) for c in costs],
        "hook_samples": [asdict(s) for s in hooks or []],
        "hook_runs": hook_runs or {},
        "targets": [{**asdict(t), "met": t.met} for t in targets],
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
        size = _param(workload, param)
        rr_text = "-" if rr is None else f"{rr:.2f}"
        row = [path, _TITLES[workload], size, f"{metric} ({_UNITS[metric]})", *cells, rr_text]
        lines.append("| " + " | ".join(row) + " |")
    if data.get("overhead"):
        lines += [
            "",
            "Cost for traffic that is not enrolled (agent running, programs attached, pods not enrolled), from "
            "back-to-back pairs of runs against kernel TCP: goodness = kernel / not enrolled for times, "
            "not enrolled / kernel for rates (1.00: no cost; 0.98: 2 % worse); median of the pairs and its "
            "95 % bootstrap interval.",
            "",
            "| path | workload | size / conns | metric | goodness | 95 % interval | pairs |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in data["overhead"]:
            size = (
                f"{c['param']} conn"
                if c["workload"] == "tps"
                else ("-" if c["workload"] == "connrate" else _size(c["param"]))
            )
            lines.append(
                f"| {c['path']} | {_TITLES[c['workload']]} | {size} | {c['metric']} | {c['goodness']:.3f} "
                f"| {c['low']:.3f}..{c['high']:.3f} | {c['n']} |"
            )
    if data.get("hook_cost"):
        lines += [
            "",
            "Hook cost: what the attached programs add per operation for sockets that are not enrolled "
            "(hookcost, CPU 0; kernel, each program alone and all of them, in rotating order each repetition; "
            "median of the repetitions' differences to kernel and its 95 % bootstrap interval).",
            "",
            "| operation | attached | kernel (ns) | added (ns) | 95 % interval (ns) | share | repetitions |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in data["hook_cost"]:
            hooks = "all" if c.get("hooks", NOT_ENROLLED) == NOT_ENROLLED else f"{c['hooks']} only"
            lines.append(
                f"| {_HOOK_TITLES.get(c['op'], c['op'])} | {hooks} | {c['kernel_ns']:.0f} | {c['added_ns']:.0f} "
                f"| {c['low_ns']:.0f}..{c['high_ns']:.0f} | {c['share'] * 100:.1f} % | {c['n']} |"
            )
    if data.get("hook_runs"):
        lines += [
            "",
            "Program runs per operation, everything attached (the kernel's run statistics; their own two clock "
            "reads per run are in the ns per run).",
            "",
            "| operation | program | runs per operation | ns per run |",
            "|---|---|---|---|",
        ]
        for op, progs in data["hook_runs"].items():
            for prog, r in progs.items():
                lines.append(
                    f"| {_HOOK_TITLES.get(op, op)} | {prog} | {r['runs_per_op']:.2f} | {r['ns_per_run']:.0f} |"
                )
    slow = data.get("slow_reader") or {}
    if slow:
        lines += [
            "",
            f"Slow reader: a non-blocking writer floods {slow.get('meta', {}).get('mib', '?')} MiB to a reader that "
            "reads 16 MiB/s, then as fast as it can (direct path, default bound).",
            "",
            "| | kernel | accelerated |",
            "|---|---|---|",
        ]
        rows = [
            ("receive side beyond TCP's buffer (peak, KiB)", "beyond_rcvbuf_bytes", 1 / 1024),
            ("host TCP memory growth (peak, MiB)", "host_tcp_bytes", 1 / (1 << 20)),
            ("writer throughput once the reader sped up (Gbit/s)", "late_gbit_per_s", 1),
            ("writer EAGAIN (waits)", "eagain", 1),
            ("errors seen by the writer", "errors", 1),
        ]
        for label, key, scale in rows:
            cells = [f"{slow[c][key] * scale:.3g}" if key in slow.get(c, {}) else "-" for c in (KERNEL, ACCEL)]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
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


def _param(workload: str, param: int) -> str:
    return f"{param} conn" if workload == "tps" else ("-" if workload == "connrate" else _size(param))


def _size(n: int) -> str:
    return f"{n // (1 << 20)} MiB" if n >= 1 << 20 else (f"{n // 1024} KiB" if n >= 1024 else f"{n} B")
