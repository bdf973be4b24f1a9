"""The alerts and the dashboard, checked without a Prometheus: promtool's
rule checks and alert unit tests, every metric a query names is one the code
exports, every alert has its runbook. (tests/e2e/test_monitoring.py
evaluates every query on a real Prometheus scraping a real cluster.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from meshaccel_lab.metricsdoc import agent_families, exposed_name, operator_families
from meshaccel_monitoring import alerts, dashboard

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts/meshaccel/files/alerts.yaml"
DASHBOARD = REPO / "charts/meshaccel/files/dashboards/meshaccel.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str) -> str:
    if not Path(PROMTOOL).is_file():
        pytest.fail("promtool missing: scripts/setup.sh installs Debian's prometheus", pytrace=False)
    res = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_promtool_accepts_the_rules() -> None:
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in promtool("check", "rules", str(RULES))


def test_alerts_fire_on_trouble_and_stay_silent_when_healthy() -> None:
    assert "SUCCESS" in promtool("test", "rules", "tests/monitoring/alerts_test.yaml")


def exported() -> set[str]:
    """Every series name the agent and the operator can export."""
    names = set()
    for family in [*agent_families(), *operator_families()]:
        names.add(exposed_name(family))
        names.update(s.name for s in family.samples)
    return names


_METRIC = re.compile(r"\b(meshaccel_[a-z0-9_]+)")


def test_every_query_names_only_exported_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [e for _, e in dashboard.queries(board)] + [a.expr for a in alerts.ALERTS]
    exprs += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    known = exported()
    unknown = {m for e in exprs for m in _METRIC.findall(e)} - known
    assert not unknown, f"queries name metrics the code does not export: {sorted(unknown)}"


def test_every_alert_has_a_runbook_section() -> None:
    runbooks = (REPO / "docs/runbooks.md").read_text()
    anchors = {m.lower() for m in re.findall(r"^## (\w+)", runbooks, flags=re.MULTILINE)}
    missing = [a.name for a in alerts.ALERTS if a.name.lower() not in anchors]
    assert not missing, f"docs/runbooks.md has no section for {missing}"
