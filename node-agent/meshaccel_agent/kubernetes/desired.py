"""The operator's pod list -> the datapath's namespaces, verified on this node."""

from __future__ import annotations

from pathlib import Path

from meshaccel_agent.datapath.enrolment import DesiredNetns
from meshaccel_agent.kubernetes.podnetns import Problem, ResolveError, resolve_pod
from meshaccel_api.v1alpha1 import EnrolledPod, PodProblem


def desired_from(pods: list[EnrolledPod], cgroup_root: Path) -> tuple[list[DesiredNetns], list[str], list[PodProblem]]:
    """(namespaces to enrol, "ns/name" of the pods enrolled, pods refused and why).

    Each pod is resolved to its network namespace through its kubelet
    cgroup; a namespace claimed by two pods is refused for both."""
    resolved: dict[str, tuple[EnrolledPod, int]] = {}
    problems: list[PodProblem] = []
    for pod in pods:
        key = f"{pod.namespace}/{pod.name}"
        try:
            netns = resolve_pod(cgroup_root, pod.uid, list(pod.ips))
        except ResolveError as exc:
            problems.append(PodProblem(pod=key, reason=exc.reason, message=str(exc)[:1024]))
            continue
        resolved[key] = (pod, netns.cookie)
    owners: dict[int, list[str]] = {}
    for key, (_, cookie) in resolved.items():
        owners.setdefault(cookie, []).append(key)
    desired: list[DesiredNetns] = []
    enrolled: list[str] = []
    for key, (pod, cookie) in sorted(resolved.items()):
        if len(owners[cookie]) > 1:
            others = ", ".join(k for k in owners[cookie] if k != key)
            problems.append(PodProblem(pod=key, reason=Problem.NETNS_SHARED, message=f"same netns as {others}"))
            continue
        desired.append(
            DesiredNetns(
                cookie,
                frozenset(pod.ips),
                frozenset(p for r in pod.excludedPorts for p in r.ports()),
                sidecar="sidecar" in pod.shapes,
                direct="direct" in pod.shapes,
            )
        )
        enrolled.append(key)
    return desired, enrolled, sorted(problems, key=lambda p: p.pod)
