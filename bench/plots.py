"""PNG plots of a benchmark run: latency percentiles and throughput per size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import ACCEL, CONFIGS, FLOOR, KERNEL, NOT_ENROLLED, Summary, lookup

COLOURS = {KERNEL: "#888888", NOT_ENROLLED: "#c9a227", ACCEL: "#1f77b4", FLOOR: "#2ca02c"}
LABELS = {KERNEL: "kernel TCP", NOT_ENROLLED: "agent, not enrolled", ACCEL: "meshaccel", FLOOR: "AF_UNIX floor"}


def _label(n: int) -> str:
    return f"{n // (1 << 20)}M" if n >= 1 << 20 else (f"{n // 1024}K" if n >= 1024 else str(n))


def plot(data: dict[str, Any], out: Path) -> None:
    summaries = [Summary(**s) for s in data["summary"]]
    table = lookup(summaries)
    title = f"{data['meta']['date']}, kernel {data['meta']['kernel']}, {data['meta']['cpus']} CPUs"

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, path in zip(axes, ("direct", "sidecar"), strict=True):
        sizes = sorted({s.param for s in summaries if s.path == path and s.workload == "latency"})
        for config in CONFIGS:
            for metric, style in (("p50_us", "-o"), ("p99_us", ":^")):
                ys = [table.get((path, "latency", n, config, metric)) for n in sizes]
                if not any(ys):
                    continue
                ax.plot(
                    [_label(n) for n in sizes],
                    [y.median if y else float("nan") for y in ys],
                    style,
                    color=COLOURS[config],
                    label=f"{LABELS[config]} {metric[:3]}",
                )
        ax.set_title(f"{path}: request/response round trip")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("microseconds (median of runs)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, path in zip(axes, ("direct", "sidecar"), strict=True):
        sizes = sorted({s.param for s in summaries if s.path == path and s.workload == "bulk"})
        for config in CONFIGS:
            ys = [table.get((path, "bulk", n, config, "gbit_per_s")) for n in sizes]
            if not any(ys):
                continue
            ax.errorbar(
                [_label(n) for n in sizes],
                [y.median if y else float("nan") for y in ys],
                yerr=[[y.median - y.low if y else 0 for y in ys], [y.high - y.median if y else 0 for y in ys]],
                fmt="-o",
                capsize=3,
                color=COLOURS[config],
                label=LABELS[config],
            )
        ax.set_title(f"{path}: bulk throughput")
        ax.set_xlabel("write size (bytes)")
        ax.set_ylabel("Gbit/s (median, min..max)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
