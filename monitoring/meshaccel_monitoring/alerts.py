"""The alert rules, one group, each with a runbook section in
docs/runbooks.md (its anchor is the alert's name in lower case).

Rendered to charts/meshaccel/files/alerts.yaml (`make generate`): a plain
Prometheus rules file (promtool checks and unit-tests it in CI, see
tests/monitoring/) that the chart also wraps into a PrometheusRule.

Agent series carry `node` (relabelled from the pod's node by the chart's
ServiceMonitor/PodMonitor); the agent's scrape job is matched by name
(`meshaccel-agent` in it), which covers both monitors' job names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from meshaccel_agent.selftest.run import INFORMATIONAL

RUNBOOKS = "https://github.com/meshaccel/meshaccel/blob/main/docs/runbooks.md"
AGENT_JOB = 'job=~".*meshaccel-agent.*"'


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{RUNBOOKS}#{self.name.lower()}",
            },
        }


ALERTS = [
    Alert(
        "MeshaccelAgentDown",
        f"up{{{AGENT_JOB}}} == 0",
        "5m",
        "warning",
        "meshaccel agent {{ $labels.instance }} does not answer",
        "Prometheus cannot scrape the agent on {{ $labels.node }}. Accelerated connections keep working (the "
        "datapath stays pinned) but new pods there are not enrolled and nothing reports what the node does.",
    ),
    Alert(
        "MeshaccelDatapathDetached",
        "meshaccel_datapath_attached == 0 unless on (instance) (meshaccel_degraded == 1)",
        "10m",
        "warning",
        "meshaccel datapath is not attached on {{ $labels.node }}",
        "The agent runs but has no programs attached, without a degraded reason: same-node traffic on this "
        "node takes plain TCP.",
    ),
    Alert(
        "MeshaccelDegraded",
        "meshaccel_degraded == 1",
        "5m",
        "warning",
        "meshaccel is off on {{ $labels.node }}: {{ $labels.reason }}",
        "The agent found a reason acceleration cannot work on this node ({{ $labels.reason }}) and keeps it on "
        "plain TCP (failing open).",
    ),
    Alert(
        "MeshaccelKernelSelftestFailed",
        # The informational checks report kernel behaviours the datapath
        # contains (README "Known kernel limitations"); failing them is no fault.
        f'meshaccel_selftest_passed{{check!~"{"|".join(INFORMATIONAL)}"}} == 0',
        "5m",
        "warning",
        "meshaccel kernel self-test {{ $labels.check }} fails on {{ $labels.node }}",
        "The node's kernel failed the agent's self-test check {{ $labels.check }}: the kernel lacks a feature or "
        "has a known sockmap regression; the node stays on plain TCP.",
    ),
    Alert(
        "MeshaccelInsertRefusalsRising",
        'sum by (node, reason) (rate(meshaccel_insert_refusals_total{reason=~".*_full"}[10m])) > 0',
        "15m",
        "warning",
        "meshaccel refuses sockets on {{ $labels.node }}: {{ $labels.reason }}",
        "A BPF map is full ({{ $labels.reason }}), so new connections there are not accelerated. Raise the "
        "NodeAgent's mapSizes.",
    ),
    Alert(
        "MeshaccelRedirectFallbacksRising",
        'sum by (node) (rate(meshaccel_passed_messages_total{reason=~"no_state|peer_gone"}[10m]))'
        " / (sum by (node) (rate(meshaccel_redirected_messages_total[10m]))"
        " + sum by (node) (rate(meshaccel_passed_messages_total[10m]))) > 0.05",
        "15m",
        "warning",
        "meshaccel cannot redirect {{ $value | humanizePercentage }} of messages on {{ $labels.node }}",
        "Messages of enrolled sockets find no peer to redirect to (no_state, peer_gone) and take the TCP stack "
        "instead. Nothing is lost, but acceleration is not doing its job there.",
    ),
    Alert(
        "MeshaccelOperatorNoLeader",
        "max(meshaccel_operator_leader) < 1 or absent(meshaccel_operator_leader)",
        "5m",
        "critical",
        "no meshaccel operator holds the lease",
        "Nothing writes NodeEnrolments: pods started from now on are not accelerated and removed pods are not "
        "unenrolled.",
    ),
    Alert(
        "MeshaccelOperatorNotReconciling",
        "min_over_time(meshaccel_operator_workqueue_depth[15m]) > 0"
        " or sum(rate(meshaccel_operator_write_errors_total[10m])) > 0",
        "15m",
        "warning",
        "the meshaccel operator does not get its NodeEnrolments written",
        "For 15 minutes the operator's queue never emptied, or its writes to the API server failed.",
    ),
]


def rules() -> dict[str, Any]:
    return {"groups": [{"name": "meshaccel", "rules": [a.rule() for a in ALERTS]}]}


HEADER = "# Generated by `make generate` from monitoring/meshaccel_monitoring/alerts.py; do not edit.\n"


def as_yaml() -> str:
    return HEADER + yaml.safe_dump(rules(), sort_keys=False, width=120)
