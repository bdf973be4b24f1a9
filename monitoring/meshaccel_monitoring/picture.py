"""The dashboard as a picture: every panel of the generated dashboard JSON,
drawn from a real Prometheus's range queries (no Grafana server is available
here), so a reader of the README sees what the dashboard shows.

The e2e tier draws it from its live cluster (tests/e2e/test_lifecycle.py);
`make dashboard-picture` runs that tier with MESHACCEL_DASHBOARD_PICTURE set
and writes docs/dashboard.png.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from meshaccel_monitoring.prometheus import Prometheus, grafana_to_promql

_UNITS = {"Bps": ("B/s", 1.0), "ops": ("/s", 1.0), "short": ("", 1.0), "none": ("", 1.0)}


def _legend(template: str, labels: dict[str, str]) -> str:
    if template in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def _human(value: float, unit: str) -> str:
    suffix, _ = _UNITS.get(unit, ("", 1.0))
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {prefix}{suffix}"
    return f"{value:.3g} {suffix}".strip()


def draw(board: dict[str, Any], prometheus: Prometheus, start: float, end: float, out: Path) -> int:
    """Draw @board's panels over [@start, @end] into @out; the number of
    series drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in board["panels"] if p.get("type") in ("stat", "timeseries")]
    stats = [p for p in panels if p["type"] == "stat"]
    series_panels = [p for p in panels if p["type"] == "timeseries"]
    columns = 2
    rows = 1 + math.ceil(len(series_panels) / columns)
    fig = plt.figure(figsize=(16, 3.2 * rows), dpi=80)
    fig.suptitle(board["title"], fontsize=15, x=0.01, ha="left")
    grid = fig.add_gridspec(rows, columns * len(stats))
    step = max(2.0, (end - start) / 300)
    drawn = 0
    for i, panel in enumerate(stats):
        ax = fig.add_subplot(grid[0, i * columns : (i + 1) * columns])
        result = prometheus.query(grafana_to_promql(panel["targets"][0]["expr"]))
        value = float(result[0]["value"][1]) if result else float("nan")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "none")
        ax.text(0.5, 0.42, _human(value, unit), ha="center", va="center", fontsize=26, color="#1f60c4")
        ax.set_title(panel["title"], fontsize=11)
        ax.set_axis_off()
        drawn += bool(result)
    for i, panel in enumerate(series_panels):
        row, col = 1 + i // columns, i % columns
        ax = fig.add_subplot(grid[row, col * len(stats) : (col + 1) * len(stats)])
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        for target in panel["targets"]:
            for series in prometheus.query_range(grafana_to_promql(target["expr"]), start, end, step):
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=_legend(target.get("legendFormat", ""), series["metric"]), linewidth=1.4)
                drawn += 1
        ax.set_title(panel["title"], fontsize=11, loc="left")
        ax.set_xlabel("seconds", fontsize=8)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _, u=unit: _human(v, u)))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return drawn
