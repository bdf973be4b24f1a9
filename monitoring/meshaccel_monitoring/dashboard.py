"""The meshaccel dashboard, built with grafana-foundation-sdk.

It answers, top to bottom: is acceleration on and where; how much traffic it
carries and how much goes through the kernel stack instead, and why; what
flow control and the redirect map are doing; whether the agents and the
operator are healthy. Every query groups by `node`, the label the chart's
ServiceMonitor/PodMonitor relabel from the pod's node name.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh

UID = "meshaccel-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
NODE = 'node=~"$node"'
RATE = "$__rate_interval"


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref)


def _stat(title: str, expr: str, description: str, unit: str = "none") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_query(expr))
        .unit(unit)
        .height(4)
        .span(4)
    )


def _series(title: str, description: str, unit: str, *targets: tuple[str, str]) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(12)
        .fill_opacity(10)
        .legend(VizLegendOptions().display_mode(LegendDisplayMode.TABLE).placement(LegendPlacement.BOTTOM))
    )
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def build() -> db.Dashboard:
    at_a_glance = [
        _stat("Nodes accelerating", f"sum(meshaccel_datapath_attached{{{NODE}}})",
              "Nodes whose agent has the datapath attached"),
        _stat("Nodes degraded", f"sum(meshaccel_degraded{{{NODE}}})",
              "Nodes kept on kernel TCP because acceleration cannot work there "
              "(the reason: alert MeshaccelDegraded, or the node's NodeEnrolment conditions)"),
        _stat("Pods enrolled", f"sum(meshaccel_netns_enrolled{{{NODE}}})",
              "Pod network namespaces enrolled for acceleration"),
        _stat("Sockets accelerated", f"sum(meshaccel_sockets_enrolled{{{NODE}}})",
              "Sockets in the redirect map now (two per same-node connection)"),
        _stat("Redirected", f"sum(rate(meshaccel_redirected_bytes_total{{{NODE}}}[{RATE}]))",
              "Bytes per second that skip the TCP/IP stack", "Bps"),
        _stat("Operator leader", "max(meshaccel_operator_leader) or vector(0)",
              "1 when an operator replica holds the lease and writes"),
    ]  # fmt: skip
    traffic = [
        _series(
            "Bytes redirected vs through the stack",
            "Accelerated bytes per node, and the bytes of enrolled sockets that took the kernel stack",
            "Bps",
            (f"sum by (node) (rate(meshaccel_redirected_bytes_total{{{NODE}}}[{RATE}]))", "{{node}} redirected"),
            (f"sum by (node) (rate(meshaccel_passed_bytes_total{{{NODE}}}[{RATE}]))", "{{node}} stack"),
        ),
        _series(
            "Through the stack, by reason",
            "Why bytes of enrolled sockets took the kernel stack: native (the pair settled on TCP), "
            "flow_control (a slow reader owes the bound), shutdown, peer_gone, peer_closed, no_state, uninstall",
            "Bps",
            (f"sum by (reason) (rate(meshaccel_passed_bytes_total{{{NODE}}}[{RATE}]))", "{{reason}}"),
        ),
        _series(
            "Messages redirected vs through the stack",
            "sendmsg() chunks per second",
            "ops",
            (f"sum by (node) (rate(meshaccel_redirected_messages_total{{{NODE}}}[{RATE}]))", "{{node}} redirected"),
            (f"sum by (node) (rate(meshaccel_passed_messages_total{{{NODE}}}[{RATE}]))", "{{node}} stack"),
        ),
        _series(
            "Connections paired and sockets enrolled",
            "New same-node connections paired per second, and sockets in the redirect map",
            "short",
            (f"sum by (node) (rate(meshaccel_pairs_total{{{NODE}}}[{RATE}]))", "{{node}} pairs/s"),
            (f"sum by (node) (meshaccel_sockets_enrolled{{{NODE}}})", "{{node}} sockets"),
        ),
    ]
    datapath = [
        _series(
            "Flow control switches",
            "Connection directions moved to the stack because the reader owes the bound, and back",
            "ops",
            (
                f"sum by (node, to) (rate(meshaccel_flow_control_switches_total{{{NODE}}}[{RATE}]))",
                "{{node}} to {{to}}",
            ),
        ),
        _series(
            "Sockets not enrolled, by reason",
            "Insert refusals: a full map (raise NodeAgent mapSizes), a mismatched or duplicate handshake",
            "ops",
            (f"sum by (reason) (rate(meshaccel_insert_refusals_total{{{NODE}}}[{RATE}]))", "{{reason}}"),
        ),
    ]
    health = [
        _series(
            "Kernel verdicts",
            "The agent's kernel self-test per node and check (1 passed), and degraded reasons (1 active)",
            "short",
            (f"min by (node, check) (meshaccel_selftest_passed{{{NODE}}})", "{{node}} {{check}}"),
            (f"sum by (node) (meshaccel_degraded{{{NODE}}})", "{{node}} degraded"),
        ),
        _series(
            "Agents: reconciles and status writes",
            "Work of each node's agent: enrolment-map reconciles and NodeEnrolment status writes per second",
            "ops",
            (f"sum by (node) (rate(meshaccel_reconciles_total{{{NODE}}}[{RATE}]))", "{{node}} reconciles"),
            (f"sum by (node) (rate(meshaccel_status_writes_total{{{NODE}}}[{RATE}]))", "{{node}} status writes"),
        ),
        _series(
            "Operator: queue and writes",
            "Nodes waiting for their NodeEnrolment to be written, writes per second and failed writes",
            "short",
            ("sum(meshaccel_operator_workqueue_depth)", "queue depth"),
            (f"sum by (operation) (rate(meshaccel_operator_node_writes_total[{RATE}]))", "{{operation}}/s"),
            (f"sum(rate(meshaccel_operator_write_errors_total[{RATE}]))", "errors/s"),
        ),
        _series(
            "Operator: pods indexed and agents by version",
            "Scheduled pods the operator watches, and running agents per version",
            "short",
            ("sum(meshaccel_operator_pods_indexed)", "pods indexed"),
            (f'count by (version) (meshaccel_build_info{{component="agent",{NODE}}})', "agents {{version}}"),
        ),
    ]
    dashboard = (
        db.Dashboard("meshaccel: same-node TCP acceleration")
        .uid(UID)
        .description("Is acceleration on, where, how much it carries, and why traffic takes the kernel stack")
        .tags(["meshaccel", "ebpf", "service-mesh"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            db.QueryVariable("node")
            .label("Node")
            .datasource(DATASOURCE)
            .query('label_values(meshaccel_build_info{component="agent"}, node)')
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .current(VariableOption(selected=True, text="All", value="$__all"))
        )
    )
    for title, panels in (("At a glance", at_a_glance), ("Traffic", traffic), ("Datapath", datapath),
                          ("Health", health)):  # fmt: skip
        dashboard = dashboard.with_row(db.Row(title))
        for panel in panels:
            dashboard = dashboard.with_panel(panel)
    return dashboard


def as_json() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target in a dashboard's JSON."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in dashboard.get("panels", [])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
