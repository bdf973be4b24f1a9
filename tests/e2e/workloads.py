"""The sample workloads: what a mesh runs on a node, in the workload image.

server  traffic.py echo (7000) and sink (7001) in one pod, behind a Service
client  a pod the tests exec checked-traffic clients in
mesh=True adds what Istio's injector adds: an init container writing the
capture rules (NET_ADMIN, NET_RAW) and an `istio-proxy` container (HAProxy;
started as root, it drops to uid 1337, which the rules exempt).
"""

from __future__ import annotations

from typing import Any

from tests.e2e.cluster import WORKLOAD_IMAGE

ECHO_PORT, SINK_PORT = 7000, 7001
SLEEP = ["python3", "-c", "import signal; signal.pause()"]


def _container(name: str, args: list[str] | None = None, command: list[str] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": WORKLOAD_IMAGE, "imagePullPolicy": "IfNotPresent"}
    if command:
        c["command"] = command
    if args:
        c["args"] = args
    return c


def _mesh(spec: dict[str, Any]) -> None:
    init = _container("istio-init", command=["istio-init"])
    init["securityContext"] = {"runAsUser": 0, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}}
    proxy = _container("istio-proxy", command=["haproxy", "-db", "-f", "/etc/meshaccel/istio/haproxy.cfg"])
    proxy["securityContext"] = {"runAsUser": 0, "capabilities": {"drop": ["ALL"], "add": ["SETUID", "SETGID"]}}
    spec["initContainers"] = [init]
    spec["containers"].append(proxy)


def pod_spec(role: str, mesh: bool, host_network: bool = False) -> dict[str, Any]:
    if role == "server":
        containers = [_container("app", ["echo", "--port", str(ECHO_PORT)]),
                      _container("sink", ["sink", "--port", str(SINK_PORT)])]  # fmt: skip
    else:
        containers = [_container("app", command=SLEEP)]
    spec: dict[str, Any] = {"containers": containers, "terminationGracePeriodSeconds": 2}
    if mesh:
        _mesh(spec)
    if host_network:
        spec["hostNetwork"] = True
    return spec


def server(name: str, namespace: str, mesh: bool) -> list[dict[str, Any]]:
    labels = {"app": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec("server", mesh)},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": labels,
            "ports": [{"name": "echo", "port": ECHO_PORT}, {"name": "sink", "port": SINK_PORT}],
        },
    }
    return [deployment, service]


def client(
    name: str, namespace: str, mesh: bool, *, opt_out: bool = False, host_network: bool = False
) -> dict[str, Any]:
    labels = {"app": name, **({"meshaccel.io/accelerate": "disabled"} if opt_out else {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": pod_spec("client", mesh, host_network),
    }


def namespace(name: str, accelerate: bool) -> dict[str, Any]:
    labels = {"meshaccel.io/accelerate": "enabled"} if accelerate else {}
    # Istio's init container needs NET_ADMIN: the baseline Pod Security level
    # forbids it, as it does for Istio without its CNI plugin.
    labels["pod-security.kubernetes.io/enforce"] = "privileged"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
