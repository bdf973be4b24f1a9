"""The control plane on a test API server: install the manifests, run the
operator and Kubernetes-mode agents as processes, create pods as a kubelet
would report them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshaccel_lab.agent import _free_port
from meshaccel_lab.kube import KubeAPI
from meshaccel_lab.topology import stop_process, wait_for
from meshaccel_operator.deploy import AGENT_SA, NAMESPACE, OPERATOR_SA

REPO = Path(__file__).resolve().parents[2]


def install(kube: KubeAPI) -> None:
    """What a user runs: the CRDs, wait until served, then RBAC."""
    kube.kubectl("apply", "-f", str(REPO / "manifests/crds"))
    kube.kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=meshaccel")
    kube.kubectl("apply", "-f", str(REPO / "manifests/rbac.yaml"))
    # Validated by the API server; nothing runs it here (no controller-manager).
    kube.kubectl("apply", "-f", str(REPO / "manifests/operator.yaml"))


def metrics_of(url: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value}."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class _Component:
    """A `python -m MODULE` process of the control plane, logging into the API
    server's work dir, ended by PID."""

    what = "component"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def _launch(self, args: list[str], ready: Callable[[], bool], timeout: float, **env: str) -> None:
        # The test API server's certificate is self-signed (kubeconfigs skip
        # verification); keep urllib3's warning about it out of the log.
        full_env = {**os.environ, "PYTHONWARNINGS": "ignore:Unverified HTTPS", **env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        wait_for(lambda: not self.alive() or ready(), timeout, f"the {self.what} to become ready")
        if not self.alive():
            raise RuntimeError(f"{self.what} exited:\n{self.log()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=30)
            self.proc = None


class OperatorProcess(_Component):
    """`meshaccel-operator` with the operator's own service account (so the
    tests also prove its RBAC is enough)."""

    what = "operator"

    def __init__(self, kube: KubeAPI, status_interval: float = 1.0) -> None:
        self.kube = kube
        self.metrics_port, self.health_port = _free_port(), _free_port()
        self.kubeconfig = kube.service_account_kubeconfig(NAMESPACE, OPERATOR_SA)
        self.status_interval = status_interval
        super().__init__(kube.workdir / f"operator-{self.metrics_port}.log")

    def start(self, timeout: float = 30.0) -> None:
        """Returns once kopf serves /healthz, i.e. after winning the Lease."""
        args = ["meshaccel_operator", "--namespace", NAMESPACE, "--metrics-address", f"127.0.0.1:{self.metrics_port}",
                "--liveness-address", f"127.0.0.1:{self.health_port}",
                "--status-interval", str(self.status_interval)]  # fmt: skip
        self._launch(args, self.healthy, timeout, KUBECONFIG=str(self.kubeconfig))

    def healthy(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.health_port}/healthz")

    def metrics(self) -> dict[str, float]:
        return metrics_of(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def writes(self) -> float:
        m = self.metrics()
        return sum(v for k, v in m.items() if k.startswith("meshaccel_operator_node_writes_total"))


def pod_manifest(
    name: str,
    namespace: str,
    node: str,
    sidecar: bool = True,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [{"name": "app", "image": "example/app:1"}]
    if sidecar:
        containers.append({"name": "istio-proxy", "image": "istio/proxyv2:1.22"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"nodeName": node, "containers": containers},
    }


def create_running_pod(kube: KubeAPI, manifest: dict[str, Any], ip: str) -> str:
    """Create the pod and report it Running with @ip through the status
    subresource, as the kubelet would; returns its UID."""
    kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    meta = manifest["metadata"]
    status = {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                         "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
    kube.kubectl("patch", "pod", meta["name"], "-n", meta["namespace"], "--subresource=status", "--type=merge",
                 "-p", json.dumps(status))  # fmt: skip
    out = kube.kubectl("get", "pod", meta["name"], "-n", meta["namespace"], "-o", "jsonpath={.metadata.uid}")
    return out.stdout.strip()


def get_json(kube: KubeAPI, *args: str) -> Any:
    return json.loads(kube.kubectl("get", *args, "-o", "json").stdout)


def agent_kubeconfig(kube: KubeAPI, node: str, pod_name: str | None = None) -> Path:
    """A token for the agent's service account bound to an agent pod on @node,
    as the kubelet would mount it (the API server adds the node's name)."""
    pod_name = pod_name or f"meshaccel-agent-{node}"
    manifest = pod_manifest(pod_name, NAMESPACE, node, sidecar=False)
    manifest["spec"]["serviceAccountName"] = AGENT_SA
    kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return kube.service_account_kubeconfig(NAMESPACE, AGENT_SA, bound_pod=pod_name)


class KubeAgentProcess(_Component):
    """`meshaccel-agent kubernetes` for one node, with a token bound to an
    agent pod on that node (as the kubelet would mount it)."""

    what = "Kubernetes-mode agent"

    def __init__(self, kube: KubeAPI, node: str, pod_cgroup_root: Path, daemonset: str = "meshaccel-agent") -> None:
        self.kube, self.node = kube, node
        self.port = _free_port()
        self.kubeconfig = agent_kubeconfig(kube, node)
        self.cgroup_root = pod_cgroup_root
        self.daemonset = daemonset
        super().__init__(kube.workdir / f"agent-{node}-{self.port}.log")

    def start(self, timeout: float = 60.0) -> None:
        args = ["meshaccel_agent", "kubernetes", "--node-name", self.node, "--namespace", NAMESPACE,
                "--daemonset", self.daemonset, "--kubeconfig", str(self.kubeconfig),
                "--pod-cgroup-root", str(self.cgroup_root), "--metrics-address", f"127.0.0.1:{self.port}",
                "--status-interval", "1"]  # fmt: skip
        self._launch(args, self.ready, timeout)

    def ready(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.port}/readyz")

    def metrics(self) -> dict[str, float]:
        return metrics_of(f"http://127.0.0.1:{self.port}/metrics")
