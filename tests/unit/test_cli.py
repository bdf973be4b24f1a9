"""The verdicts of `meshaccel status`, `doctor` and `top`, on hand-made
objects, host facts and frames (the real ones: tests/datapath/test_cli.py,
tests/k8s/test_control_plane.py and the e2e tier)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from meshaccel import doctor as doctor_cli
from meshaccel import status, top
from meshaccel.agents import AgentPod
from meshaccel_agent import doctor
from meshaccel_agent.selftest.run import ESSENTIAL

GOOD = doctor.Facts(
    kernel="6.1.0-18-amd64",
    mounts=[("/sys/fs/cgroup", "cgroup2", "rw"), ("/sys/fs/bpf", "bpf", "rw")],
    cap_eff=(1 << 41) - 1,
    btf=True,
    cgroup2="/sys/fs/cgroup",
    selftest=dict.fromkeys(ESSENTIAL, True),
)


def test_a_good_node_passes_every_check() -> None:
    findings = doctor.diagnose(GOOD)
    assert all(f.ok for f in findings), doctor_cli.render(findings)
    assert doctor_cli.render(findings).endswith("acceleration can work on this node")


@pytest.mark.parametrize(
    ("change", "check", "fatal"),
    [
        ({"kernel": "5.10.0-28-amd64"}, "kernel", True),
        ({"cgroup2": ""}, "cgroup2", True),
        (
            {"mounts": [*GOOD.mounts, ("/sys/fs/cgroup/net_cls,net_prio", "cgroup", "rw,net_cls,net_prio")]},
            "cgroup v1 net_cls/net_prio",
            True,
        ),
        ({"mounts": [("/sys/fs/cgroup", "cgroup2", "rw")]}, "bpffs", True),
        ({"btf": False, "headers": False}, "BTF or headers", True),
        ({"cap_eff": ((1 << 41) - 1) & ~(1 << 39)}, "capabilities", True),
        ({"other_sockops": ["cil_sockops (id 7)"]}, "other sock_ops programs", False),
        ({"selftest": {**(GOOD.selftest or {}), "flow_control": False}}, "kernel self-test", True),
        ({"selftest": None}, "kernel self-test", False),
        ({"kernel": "6.12.80"}, "known sockmap regressions", False),
    ],
)
def test_each_problem_is_named_with_its_fix(change: dict[str, Any], check: str, fatal: bool) -> None:
    facts = doctor.Facts(**{**GOOD.__dict__, **change})
    (bad,) = [f for f in doctor.diagnose(facts) if not f.ok]
    assert bad.check == check and bad.fix and bad.fatal is fatal
    assert doctor_cli.render(doctor.diagnose(facts)).endswith(
        "cannot work on this node" if fatal else "can work on this node"
    )


@pytest.mark.parametrize(
    ("kernel", "stack_fionread", "carried"),
    [
        ("6.6.127", None, []),
        ("6.6.128", None, ["929e30f93125"]),
        ("6.7.0", None, []),
        ("6.12.74", None, []),
        ("6.12.75", None, ["929e30f93125"]),
        ("6.12.79-cloud", None, ["929e30f93125", "beyla#2941"]),
        ("6.13.0", None, []),
        ("6.18.13", None, []),
        ("6.18.44-fc-v1147", None, ["929e30f93125"]),
        ("6.19.0", None, ["929e30f93125"]),
        ("7.2.1", None, ["929e30f93125"]),
        # The self-test's measurement outranks the version: a backport into a
        # distribution kernel, and a kernel whose fix the table does not know.
        ("6.1.0-26-amd64", False, ["929e30f93125"]),
        ("6.18.44-fc-v1147", True, []),
        ("6.12.79", True, ["beyla#2941"]),
    ],
)
def test_known_regressions_by_release_and_by_the_self_test(
    kernel: str, stack_fionread: bool | None, carried: list[str]
) -> None:
    selftest = dict(GOOD.selftest or {})
    if stack_fionread is not None:
        selftest["stack_fionread"] = stack_fionread
    facts = doctor.Facts(**{**GOOD.__dict__, "kernel": kernel, "selftest": selftest})
    named = [r for r in doctor.KNOWN_REGRESSIONS if any(c in r.ref for c in carried)]
    assert len(named) == len(carried)
    assert [r for r in doctor.KNOWN_REGRESSIONS if doctor.carries(facts, r)] == named
    finding = doctor.check_known_regressions(facts)
    assert finding.ok is (not carried) and not finding.fatal
    assert all(ref in finding.detail for ref in carried)


def test_a_release_without_a_patch_level_is_said_to_be_unsure() -> None:
    assert "no stable patch level" in doctor.check_known_regressions(GOOD).detail
    facts = doctor.Facts(**{**GOOD.__dict__, "kernel": "6.1.112"})
    assert doctor.check_known_regressions(facts).detail == "none known for Linux 6.1.112"


def _enrolment(name: str, **status_fields: Any) -> dict[str, Any]:
    ready = {"type": "Ready", "status": "True", "reason": "Accelerating"}
    body = {"datapathAttached": True, "kernel": "6.1", "podsDesired": 2, "podsEnrolled": 2,
            "counters": {"bytesRedirected": 3 << 20, "socketsEnrolled": 4}, "conditions": [ready]}  # fmt: skip
    return {"metadata": {"name": name}, "status": {**body, **status_fields}}


AGENT = {"metadata": {"name": "meshaccel-agent", "namespace": "meshaccel-system"},
         "spec": {"image": "img"}, "status": {"nodesDesired": 2, "nodesReady": 2}}  # fmt: skip
POLICY = {"metadata": {"name": "default"}, "spec": {"enabled": True},
          "status": {"matchedPods": 2, "acceleratedPods": 2,
                     "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip


def test_a_healthy_cluster_is_ok() -> None:
    result = status.from_objects([_enrolment("n2"), _enrolment("n1")], [AGENT], [POLICY])
    assert result.ok and [n.node for n in result.nodes] == ["n1", "n2"]
    text = status.render(result)
    assert "OK: acceleration works" in text and "3.0 MiB" in text
    assert json.loads(status.output(result, "json"))["ok"] is True


def test_a_degraded_node_and_a_missing_agent_are_named() -> None:
    degraded = _enrolment(
        "n2",
        datapathAttached=False,
        conditions=[
            {"type": "Ready", "status": "False", "reason": "Degraded"},
            {"type": "Degraded", "status": "True", "reason": "NoCgroup2", "message": "no cgroup2 at /tmp"},
        ],
    )
    agent = {**AGENT, "status": {"nodesDesired": 2, "nodesReady": 1}}
    result = status.from_objects([_enrolment("n1"), degraded], [agent], [POLICY])
    assert not result.ok
    assert "node n2: degraded, NoCgroup2: no cgroup2 at /tmp" in result.problems
    assert "NodeAgent meshaccel-agent: 1 of 2 nodes have a Ready agent" in result.problems
    assert "False (Degraded)" in status.render(result)
    assert status.from_objects([], [], []).problems[0].startswith("no NodeAgent")


def _answer(findings: list[doctor.Finding]) -> dict[str, Any]:
    from dataclasses import asdict

    return {"node": "n", "canAccelerate": doctor.can_accelerate(findings), "findings": [asdict(f) for f in findings]}


def test_cluster_doctor_names_each_node_that_cannot_accelerate() -> None:
    good = doctor.diagnose(GOOD)
    no_bpffs = doctor.diagnose(doctor.Facts(**{**GOOD.__dict__, "mounts": [("/sys/fs/cgroup", "cgroup2", "rw")]}))

    def pod(node: str, why: str = "") -> AgentPod:
        return AgentPod("meshaccel-system", f"agent-{node}", node, 9464, why)

    answers: list[tuple[AgentPod, dict[str, Any] | Exception]] = [
        (pod("n1"), _answer(good)),
        (pod("n2"), _answer(no_bpffs)),
        (pod("n3"), TimeoutError("timed out")),
        (pod("n4", "pod Pending (Unschedulable)"), _answer(good)),
    ]
    text, ok = doctor_cli.cluster_report(["n1", "n2", "n3", "n4", "n5"], answers)
    assert not ok
    assert "== node n1 (agent meshaccel-system/agent-n1)" in text and "can work on node n1" in text
    assert "[FAIL] bpffs" in text and "cannot work on node n2" in text
    assert "[FAIL] agent: does not answer (TimeoutError: timed out)" in text
    assert "does not answer (pod Pending (Unschedulable))" in text
    assert "== node n5\n[FAIL] agent: no agent pod on this node" in text
    assert text.endswith("1 of 5 node(s) can accelerate; not: n2, n3, n4, n5")
    assert doctor_cli.cluster_report(["n1"], [(pod("n1"), _answer(good))])[1] is True


METRICS = """\
# TYPE meshaccel_sockets_enrolled gauge
meshaccel_sockets_enrolled 4
# TYPE meshaccel_redirected_bytes counter
meshaccel_redirected_bytes_total {rb}
# TYPE meshaccel_redirected_messages counter
meshaccel_redirected_messages_total {rm}
# TYPE meshaccel_passed_bytes counter
meshaccel_passed_bytes_total{{reason="native"}} 100
meshaccel_passed_bytes_total{{reason="flow_control"}} {pb}
# TYPE meshaccel_flow_control_switches counter
meshaccel_flow_control_switches_total{{to="stack"}} {sp}
meshaccel_flow_control_switches_total{{to="redirect"}} 99
"""


def test_top_rates_come_from_the_agents_counters() -> None:
    before = top.counters_from_metrics(METRICS.format(rb=1000, rm=10, pb=0, sp=1))
    after = top.counters_from_metrics(METRICS.format(rb=5000, rm=50, pb=400, sp=3))
    assert (after.sockets, after.passed_bytes, after.spills) == (4, 500, 3)
    (node,), _ = top.rates(top.Frame(10.0, {"n1": before}), top.Frame(12.0, {"n1": after}))
    assert (node.redirected_bps, node.redirected_mps, node.passed_bps, node.spills_ps) == (2000, 20, 200, 1)
    # A counter that went down (a new datapath generation) counts from zero.
    (reset,), _ = top.rates(top.Frame(0.0, {"n1": after}), top.Frame(1.0, {"n1": before}))
    assert reset.redirected_bps == 1000


def test_top_endpoint_rates_follow_each_connection() -> None:
    def ep(flows: dict[bytes, int], spilled: int = 0) -> top.EndpointCounters:
        return top.EndpointCounters(len(flows), spilled, flows)

    prev = top.Frame(0.0, {}, {"10.0.0.2:80": ep({b"a": 100, b"gone": 50}), "10.0.0.3:6379": ep({b"c": 0})})
    cur = top.Frame(2.0, {}, {"10.0.0.2:80": ep({b"a": 300, b"new": 60}), "10.0.0.3:6379": ep({b"c": 1000}, 1)})
    _, endpoints = top.rates(prev, cur)
    # Busiest first; a new connection counts from its start, a closed one
    # drops out (never a negative or inflated rate).
    assert [(e.endpoint, e.connections, e.spilled, e.redirected_bps) for e in endpoints] == [
        ("10.0.0.3:6379", 1, 1, 500.0), ("10.0.0.2:80", 2, 0, 130.0)]  # fmt: skip


def test_top_view_shows_nodes_errors_and_endpoints() -> None:
    from rich.console import Console

    nodes = [top.NodeRate("n1", 4, 2.5e6, 1200, 0, 0.5), top.NodeRate("n2", 0, 0, 0, 0, 0, "no answer: TimeoutError")]
    console = Console(width=120, record=True)
    console.print(top.view(nodes, [top.EndpointRate("10.0.0.2:80", 3, 0, 1.25e6)], 2.0))
    text = console.export_text()
    assert "meshaccel top: every 2s" in text and "20.0 Mbit/s" in text and "1.2 kmsg/s" in text
    assert "no answer: TimeoutError" in text and "10.0.0.2:80" in text and "10.0 Mbit/s" in text


def test_top_refuses_a_refresh_faster_than_its_bound() -> None:
    from meshaccel.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["top", "--interval", "0.1"])
    assert exc.value.code == 2


def test_top_piped_prints_every_frame_with_no_column_cut(capsys: pytest.CaptureFixture[str]) -> None:
    name = "a-node-with-a-rather-long-name.cluster.example"
    counters = [top.NodeCounters(sockets=12, redirected_bytes=b, redirected_messages=b / 100) for b in (0, 1e6, 3e6)]
    frames = iter(top.Frame(float(i), {name: c}) for i, c in enumerate(counters))
    top.run(lambda: next(frames), top.MIN_INTERVAL, count=2)
    out = capsys.readouterr().out
    assert out.count("meshaccel top: every 0.5s") == 2, out
    assert "…" not in out and "FLOW-CONTROL SWITCHES" in out, out
    assert re.search(rf"{re.escape(name)}\s+12\s+", out), out
