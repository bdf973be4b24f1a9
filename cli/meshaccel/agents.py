"""The agents of a cluster, asked through the API server.

Each agent serves /metrics and /doctor on its metrics port; the API server's
pod proxy (GET /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH) reaches them
from wherever a kubeconfig works, without a port-forward or a route to the
pod network. The caller needs RBAC `get` on `pods/proxy` (cluster-admin has
it; docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

#: The label every agent pod carries (operator/meshaccel_operator/deploy.py).
AGENT_SELECTOR = "app.kubernetes.io/name=meshaccel-agent"

T = TypeVar("T")


@dataclass(frozen=True)
class AgentPod:
    namespace: str
    name: str
    node: str
    port: int
    #: "" when the pod can answer; else why not (its phase and reason).
    unavailable: str = ""


def agent_pods(api: Any) -> list[AgentPod]:
    from kubernetes import client

    pods = client.CoreV1Api(api).list_pod_for_all_namespaces(label_selector=AGENT_SELECTOR).items
    out = []
    for pod in pods:
        port = next(
            (p.container_port for c in pod.spec.containers for p in (c.ports or []) if p.name == "metrics"), 9464
        )
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        why = ""
        if pod.status.phase != "Running":
            why = f"pod {pod.status.phase}" + (f" ({pod.status.reason})" if pod.status.reason else "")
        elif not pod.status.pod_ip:
            why = "pod has no IP yet"
        elif not ready and not pod.status.container_statuses:
            why = "containers not started"
        out.append(AgentPod(pod.metadata.namespace, pod.metadata.name, pod.spec.node_name or "", port, why))
    return sorted(out, key=lambda p: (p.node, p.name))


def node_names(api: Any) -> list[str]:
    from kubernetes import client

    return sorted(n.metadata.name for n in client.CoreV1Api(api).list_node().items)


def proxy_get(api: Any, pod: AgentPod, path: str, timeout: float = 10.0) -> str:
    """GET @path of the agent in @pod, through the API server."""
    from kubernetes import client

    # _preload_content=False: the raw body. The generated client would
    # otherwise "deserialize" a JSON body into a Python repr string.
    response = client.CoreV1Api(api).connect_get_namespaced_pod_proxy_with_path(
        f"{pod.name}:{pod.port}", pod.namespace, path, _preload_content=False, _request_timeout=timeout
    )
    return str(response.data.decode())


def ask_all(pods: Iterable[AgentPod], ask: Callable[[AgentPod], T]) -> list[tuple[AgentPod, T | Exception]]:
    """@ask every pod at once (a few at a time), keeping each one's error."""

    def one(pod: AgentPod) -> tuple[AgentPod, T | Exception]:
        try:
            return pod, ask(pod)
        except Exception as exc:  # a node's failure is that node's answer, not the command's
            return pod, exc

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, pods))
