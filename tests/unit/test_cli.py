"""The verdicts of `meshaccel status` and `meshaccel doctor`, on hand-made
objects and host facts (the real ones: tests/datapath/test_cli.py,
tests/k8s/test_cli.py and the e2e tier)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshaccel import doctor, status

GOOD = doctor.Facts(
    kernel="6.1.0-18-amd64",
    mounts=[("/sys/fs/cgroup", "cgroup2", "rw"), ("/sys/fs/bpf", "bpf", "rw")],
    cap_eff=(1 << 41) - 1,
    btf=True,
    cgroup2="/sys/fs/cgroup",
    selftest=dict.fromkeys(("redirect", "large_write", "fionread", "epoll_wakeup", "flow_control", "half_close"), True),
)


def test_a_good_node_passes_every_check() -> None:
    findings = doctor.diagnose(GOOD)
    assert all(f.ok for f in findings), doctor.render(findings)
    assert doctor.render(findings).endswith("acceleration can work on this node")


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
    ],
)
def test_each_problem_is_named_with_its_fix(change: dict[str, Any], check: str, fatal: bool) -> None:
    facts = doctor.Facts(**{**GOOD.__dict__, **change})
    (bad,) = [f for f in doctor.diagnose(facts) if not f.ok]
    assert bad.check == check and bad.fix and bad.fatal is fatal
    assert doctor.render(doctor.diagnose(facts)).endswith(
        "cannot work on this node" if fatal else "can work on this node"
    )


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
