"""`meshaccel doctor`: can acceleration work, and if not, what to fix.

On a node (or `kubectl exec` in the agent pod) it checks this host
(meshaccel_agent.doctor) and reads the local agent's self-test from its
/metrics. With `--cluster` it asks every agent through the API server
(GET /doctor, see meshaccel.agents) and names the nodes that have no agent
or whose agent does not answer. Exit code 1 when a node cannot accelerate.
"""

from __future__ import annotations

import json
from typing import Any

from meshaccel.agents import AgentPod
from meshaccel_agent.doctor import Finding, can_accelerate


def agent_selftest(url: str) -> dict[str, bool] | None:
    """meshaccel_selftest_passed{check} of the agent at @url (its /metrics,
    or the agent's address, to which /metrics is added)."""
    import urllib.parse
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    if urllib.parse.urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/metrics"
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {
        s.labels["check"]: s.value == 1
        for family in text_string_to_metric_families(text)
        if family.name == "meshaccel_selftest_passed"
        for s in family.samples
    }


def render(findings: list[Finding], where: str = "this node") -> str:
    lines = []
    for f in findings:
        mark = "ok  " if f.ok else ("FAIL" if f.fatal else "warn")
        lines.append(f"[{mark}] {f.check}: {f.detail}")
        if f.fix and not f.ok:
            lines.append(f"       fix: {f.fix}")
    lines.append(f"acceleration {'can' if can_accelerate(findings) else 'cannot'} work on {where}")
    return "\n".join(lines)


def local(bpffs: str, agent_url: str, cgroup: str) -> tuple[str, bool]:
    from meshaccel_agent import doctor

    findings = doctor.diagnose(doctor.gather(bpffs, cgroup, agent_selftest(agent_url)))
    return render(findings), can_accelerate(findings)


def cluster_report(nodes: list[str], answers: list[tuple[AgentPod, dict[str, Any] | Exception]]) -> tuple[str, bool]:
    """Every node's verdict (pure): @answers are (agent pod, its /doctor
    JSON or the error asking it)."""
    sections, bad = [], []
    seen = set()
    for pod, answer in answers:
        seen.add(pod.node)
        head = f"== node {pod.node} (agent {pod.namespace}/{pod.name})"
        if isinstance(answer, Exception) or pod.unavailable:
            why = pod.unavailable or f"{type(answer).__name__}: {answer}".strip()
            sections.append(f"{head}\n[FAIL] agent: does not answer ({why})\n"
                            f"       fix: kubectl -n {pod.namespace} describe pod {pod.name}; "
                            f"kubectl -n {pod.namespace} logs {pod.name}")  # fmt: skip
            bad.append(pod.node)
            continue
        findings = [Finding(**f) for f in answer["findings"]]
        sections.append(f"{head}\n{render(findings, 'node ' + pod.node)}")
        if not can_accelerate(findings):
            bad.append(pod.node)
    for node in nodes:
        if node not in seen:
            sections.append(f"== node {node}\n[FAIL] agent: no agent pod on this node\n"
                            "       fix: check the NodeAgent's nodeSelector/tolerations and "
                            "`kubectl get ds -A -l app.kubernetes.io/name=meshaccel-agent`")  # fmt: skip
            bad.append(node)
    total = len(seen | set(nodes))
    summary = f"{total - len(bad)} of {total} node(s) can accelerate"
    if bad:
        summary += "; not: " + ", ".join(sorted(bad))
    return "\n\n".join([*sections, summary]), not bad


def cluster(api: Any) -> tuple[str, bool]:
    from meshaccel import agents

    pods = agents.agent_pods(api)
    answers = agents.ask_all(pods, lambda pod: json.loads(agents.proxy_get(api, pod, "doctor")))
    return cluster_report(agents.node_names(api), answers)
