"""What the e2e suite drives: a cluster (any kubeconfig), its node, helm and
the README's own install commands.

The local cluster (e2e/up) is this host, so "on the node" means here; on kind
it means inside the node container. Everything the suite checks on the node
(pins, cgroup attachments) goes through `Node.sh`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from meshaccel_lab.agent import samples_by_name
from meshaccel_operator.manifests import HELM

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "meshaccel-system"
WORKLOAD_IMAGE = "docker.io/meshaccel/e2e-workload:0.1.0"
AGENT_IMAGE = "docker.io/meshaccel/agent:0.1.0"
TRAFFIC = ["python3", "/usr/local/lib/meshaccel/traffic.py"]


class E2EError(AssertionError):
    pass


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise E2EError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@dataclass
class Node:
    """Commands on the cluster's node: here, or in a kind node container."""

    container: str = ""  # kind: the node container; "": this host

    def sh(self, command: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "exec", self.container, "sh", "-c", command] if self.container else ["sh", "-c", command]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise E2EError(f"on the node: {command}: {res.stderr.strip()}")
        return res

    def meshaccel_sockops(self) -> list[int]:
        """IDs of meshaccel sockops programs attached to the node's cgroup2 root."""
        if self.container:
            from meshaccel_e2e import kind

            return kind.meshaccel_sockops(self.container)
        from meshaccel_agent.datapath.attach import our_sockops_on
        from meshaccel_agent.kernel.host import find_cgroup2

        return list(our_sockops_on(find_cgroup2()))

    def tag_image(self, source: str, target: str) -> None:
        if self.container:
            from meshaccel_e2e import kind

            kind.tag(self.container, source, target)
        else:
            from meshaccel_e2e.images import tag_local

            tag_local(source, target)


@dataclass
class Cluster:
    kubeconfig: Path
    node: Node

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, cwd=REPO)
        if check and res.returncode != 0:
            raise E2EError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def plugin(self, *args: str, timeout: float = 120) -> str:
        """`kubectl meshaccel ARGS`: the CLI as kubectl finds it (kubectl-meshaccel
        on PATH). kubectl gives a plugin no flags of its own: KUBECONFIG does."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
        res = subprocess.run(["kubectl", "meshaccel", *args], capture_output=True, text=True, timeout=timeout,
                             env=env, cwd=REPO)  # fmt: skip
        if res.returncode != 0:
            raise E2EError(f"kubectl meshaccel {' '.join(args)} (exit {res.returncode}): {res.stdout}{res.stderr}")
        return res.stdout

    def helm(self, *args: str, timeout: float = 300) -> str:
        if not HELM.is_file():
            raise E2EError(f"{HELM} missing: run scripts/build-helm.sh")
        cmd = [str(HELM), f"--kubeconfig={self.kubeconfig}", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if res.returncode != 0:
            raise E2EError(f"helm {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

    def get(self, kind: str, name: str = "", namespace: str = "", check: bool = True) -> Any:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        out = self.kubectl(*args, check=check)
        return json.loads(out) if out else None

    def exists(self, kind: str, name: str, namespace: str = "") -> bool:
        args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
        return bool(self.kubectl(*args, *(["-n", namespace] if namespace else [])).strip())

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json"))["items"])

    def exec(self, namespace: str, pod: str, container: str, *cmd: str, timeout: float = 300) -> str:
        return self.kubectl("exec", "-n", namespace, pod, "-c", container, "--", *cmd, timeout=timeout)

    def traffic(self, namespace: str, pod: str, *args: str, timeout: float = 300) -> dict[str, Any]:
        """Run a checked-traffic client in @pod; its JSON result."""
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}", "exec", "-n", namespace, pod, "-c", "app", "--",
               *TRAFFIC, *args]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = res.stdout.strip().splitlines()
        if not lines:
            raise E2EError(f"traffic {' '.join(args)} in {pod}: no result ({res.stderr.strip()[-500:]})")
        return dict(json.loads(lines[-1]))

    def agent_pods(self) -> list[dict[str, Any]]:
        return self.pods(NAMESPACE, "app.kubernetes.io/name=meshaccel-agent")

    def agent_metrics(self) -> dict[str, float]:
        """The agent's /metrics on the node, through the API server's pod proxy:
        "name{label=value,...}" -> value."""
        pods = [p for p in self.agent_pods() if p["status"].get("phase") == "Running"]
        if not pods:
            raise E2EError("no running agent pod")
        name = pods[0]["metadata"]["name"]
        return samples_by_name(
            self.kubectl("get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}:9464/proxy/metrics")
        )


def readme_commands(block: str) -> list[list[str]]:
    """The commands of the README block marked `<!-- e2e: BLOCK -->`: what a
    user types, which the suite runs as it stands (one command per line,
    comments and continuation lines handled)."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- e2e: {re.escape(block)} -->\s*```sh\n(.*?)```", text, re.S)
    if not match:
        raise E2EError(f"README.md has no block marked <!-- e2e: {block} -->")
    commands = []
    for line in match.group(1).replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def run_readme(cluster: Cluster, block: str) -> None:
    """Run a README block against @cluster: `helm` and `kubectl` get its
    kubeconfig (and helm is the one scripts/build-helm.sh built)."""
    for argv in readme_commands(block):
        tool, args = argv[0], argv[1:]
        if tool == "helm":
            cluster.helm(*args)
        elif tool == "kubectl" and args[:1] == ["meshaccel"]:
            cluster.plugin(*args[1:])
        elif tool == "kubectl":
            cluster.kubectl(*args, timeout=300)
        else:
            raise E2EError(f"README block {block}: unexpected command {tool}")


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def cluster_from_env() -> Cluster | None:
    """A cluster the user brought (MESHACCEL_E2E_KUBECONFIG; kind: also
    MESHACCEL_E2E_NODE=<node container>), or None for the local one."""
    config = os.environ.get("MESHACCEL_E2E_KUBECONFIG")
    if not config:
        return None
    return Cluster(Path(config), Node(os.environ.get("MESHACCEL_E2E_NODE", "")))
