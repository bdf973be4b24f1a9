"""`meshaccel status`: is acceleration on, is it working, and if not, why?

Cluster-wide (the default) it reads the three kinds of the API: per node the
NodeEnrolment its agent writes (attached, kernel, pods, sockets, bytes,
conditions), the NodeAgents (agents Ready on every node) and the policies
(selected and accelerated pods). `--local` reads this node's pins and maps
instead (on a node, in the agent pod, or in standalone mode), without an API
server. Exit code 1 when something is wrong, with each problem named.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from meshaccel_api.v1alpha1 import GROUP, VERSION, AccelerationPolicy, NodeAgent, NodeEnrolment


@dataclass
class NodeRow:
    node: str
    attached: bool
    ready: str  # condition status + reason, e.g. "True" or "False (NoCgroup2)"
    kernel: str
    pods: str  # enrolled/desired
    sockets: int
    bytes_redirected: int
    bytes_passed: int
    messages_redirected: int
    messages_passed: int


@dataclass
class Status:
    nodes: list[NodeRow] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c.get("type") == kind), {})


def from_objects(
    enrolments: Sequence[dict[str, Any]], agents: Sequence[dict[str, Any]], policies: Sequence[dict[str, Any]]
) -> Status:
    """The status a user should see, from the API's objects (pure)."""
    out = Status()
    for ne in sorted(enrolments, key=lambda o: str(o["metadata"]["name"])):
        name, status = ne["metadata"]["name"], ne.get("status") or {}
        counters = status.get("counters") or {}
        ready = _condition(ne, "Ready")
        ready_text = ready.get("status", "Unknown") + (f" ({ready['reason']})" if ready.get("reason") else "")
        out.nodes.append(
            NodeRow(
                node=name,
                attached=bool(status.get("datapathAttached")),
                ready=ready_text,
                kernel=status.get("kernel", ""),
                pods=f"{status.get('podsEnrolled', 0)}/{status.get('podsDesired', 0)}",
                sockets=counters.get("socketsEnrolled", 0),
                bytes_redirected=counters.get("bytesRedirected", 0),
                bytes_passed=counters.get("bytesPassed", 0),
                messages_redirected=counters.get("messagesRedirected", 0),
                messages_passed=counters.get("messagesPassed", 0),
            )
        )
        if not status:
            out.problems.append(f"node {name}: no agent has reported (is an agent scheduled there?)")
            continue
        degraded = _condition(ne, "Degraded")
        if degraded.get("status") == "True":
            out.problems.append(f"node {name}: degraded, {degraded.get('reason')}: {degraded.get('message', '')}")
        elif not status.get("datapathAttached"):
            out.problems.append(f"node {name}: datapath not attached")
        if ready and ready.get("status") != "True" and degraded.get("status") != "True":
            out.problems.append(f"node {name}: not ready, {ready.get('reason')}: {ready.get('message', '')}")
        for p in status.get("problems", []):
            out.problems.append(f"node {name}: pod {p.get('pod')} not enrolled: {p.get('reason')}")
    for agent in agents:
        meta, status = agent["metadata"], agent.get("status") or {}
        want, ready = status.get("nodesDesired", 0), status.get("nodesReady", 0)
        out.agents.append({"name": f"{meta.get('namespace', '')}/{meta['name']}", "nodesReady": ready,
                           "nodesDesired": want, "image": agent.get("spec", {}).get("image", "")})  # fmt: skip
        if ready < want or not want:
            out.problems.append(f"NodeAgent {meta['name']}: {ready} of {want} nodes have a Ready agent")
    if not agents:
        out.problems.append("no NodeAgent: no node runs an agent (helm install, or apply manifests/agent.yaml)")
    for policy in sorted(policies, key=lambda o: str(o["metadata"]["name"])):
        meta, status = policy["metadata"], policy.get("status") or {}
        ready = _condition(policy, "Ready")
        out.policies.append({"name": meta["name"], "enabled": policy.get("spec", {}).get("enabled", True),
                             "matchedPods": status.get("matchedPods", 0),
                             "acceleratedPods": status.get("acceleratedPods", 0),
                             "ready": ready.get("status", "Unknown")})  # fmt: skip
        if policy.get("spec", {}).get("enabled", True) and status.get("acceleratedPods", 0) < status.get(
            "matchedPods", 0
        ):
            out.problems.append(
                f"policy {meta['name']}: {status.get('acceleratedPods', 0)} of {status.get('matchedPods', 0)} "
                "selected pods accelerated"
            )
    return out


def gather(api: Any) -> Status:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)

    def items(plural: str) -> list[dict[str, Any]]:
        return list(custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"])

    return from_objects(items(NodeEnrolment.plural), items(NodeAgent.plural), items(AccelerationPolicy.plural))


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def render(status: Status) -> str:
    rows = [["NODE", "ATTACHED", "READY", "PODS", "SOCKETS", "REDIRECTED", "VIA STACK", "KERNEL"]]
    for n in status.nodes:
        rows.append([n.node, "yes" if n.attached else "no", n.ready, n.pods, str(n.sockets),
                     _bytes(n.bytes_redirected), _bytes(n.bytes_passed), n.kernel])  # fmt: skip
    parts = [table(rows) if status.nodes else "no node to show"]
    if status.agents:
        parts.append(table([["NODEAGENT", "READY", "IMAGE"]] + [
            [a["name"], f"{a['nodesReady']}/{a['nodesDesired']}", a["image"]] for a in status.agents]))  # fmt: skip
    if status.policies:
        parts.append(table([["POLICY", "ENABLED", "SELECTED", "ACCELERATED", "READY"]] + [
            [p["name"], str(p["enabled"]).lower(), str(p["matchedPods"]), str(p["acceleratedPods"]), p["ready"]]
            for p in status.policies]))  # fmt: skip
    parts.append(
        "OK: acceleration works" if status.ok else "PROBLEMS:\n" + "\n".join(f"  - {p}" for p in status.problems)
    )
    return "\n\n".join(parts)


def output(status: Status, fmt: str) -> str:
    data = asdict(status) | {"ok": status.ok}
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt == "yaml":
        return str(yaml.safe_dump(data, sort_keys=False))
    return render(status)


def gather_local(bpffs: str, cgroup: str | None) -> Status:
    """This node, from the pinned datapath: what the agent would report."""
    import os

    from meshaccel_agent.datapath.pins import PinRoot
    from meshaccel_agent.kernel.host import find_cgroup2, is_bpffs
    from meshaccel_agent.kernel.layout import PASS_REASONS, Counter

    out = Status()
    node = os.uname().nodename
    if not is_bpffs(bpffs):
        out.problems.append(f"{bpffs} is not a bpf filesystem: no datapath can be pinned here")
        return out
    current = PinRoot(bpffs).current()
    if current is None:
        out.problems.append(f"no datapath pinned under {bpffs}/meshaccel: no agent has installed one on this node")
        return out
    root = cgroup or find_cgroup2()
    counters = current.counters()
    attached = current.sockops_attached(root)
    out.nodes.append(
        NodeRow(
            node=node,
            attached=attached,
            ready="-",
            kernel=os.uname().release,
            pods="-",
            sockets=len(current.sockhash_keys()),
            bytes_redirected=counters[Counter.REDIR_BYTES],
            bytes_passed=sum(counters[b] for _, b in PASS_REASONS.values()),
            messages_redirected=counters[Counter.REDIR_MSGS],
            messages_passed=sum(counters[m] for m, _ in PASS_REASONS.values()),
        )
    )
    if not attached:
        out.problems.append(f"the pinned datapath is not attached to {root}: new connections are not accelerated")
    return out
