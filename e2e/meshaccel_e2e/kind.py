"""The workstation path: the same suite on a kind cluster (Docker required).

    e2e/up --kind          kind create cluster (kindest/node v1.30.4), the
                           images built with `docker build` from the
                           Dockerfiles, saved, and loaded with
                           `kind load image-archive`
    e2e/down --kind        kind delete cluster
    MESHACCEL_E2E_KUBECONFIG=$(e2e/up --kind --print-kubeconfig) \\
    MESHACCEL_E2E_NODE=meshaccel-control-plane pytest -m e2e tests/e2e

kind cannot run on the CI machines (no registry for kindest/node); this path
is written for, and reviewed against, kind v0.24.0's documented behaviour.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from meshaccel_images.build import IMAGES, REPO, reference

KIND_VERSION = "v0.24.0"
#: The node image kind v0.24.0 pairs with Kubernetes 1.30.4 (its release notes).
NODE_IMAGE = "kindest/node:v1.30.4@sha256:976ea815844d5fa93be213437e3ff5754cd599b040946b5cca43ca45c2047114"
CLUSTER = "meshaccel"
#: The one node's container (kind names it <cluster>-control-plane).
NODE_CONTAINER = f"{CLUSTER}-control-plane"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "meshaccel"
KUBECONFIG = CACHE / "kind.kubeconfig"
#: One node; the kernel (and its BTF) is the host's, shared through the
#: privileged node container. kind's node has no bpffs (systemd does not mount
#: it inside a container), so up() mounts one there: the agent does not mount
#: bpffs itself in a pod (its pins would die with the pod's mount namespace).
CONFIG = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
"""


def kind_binary() -> str:
    found = shutil.which("kind")
    if found:
        return found
    gobin = CACHE / "kind" / KIND_VERSION
    if not (gobin / "kind").exists():
        subprocess.run(["go", "install", f"sigs.k8s.io/kind@{KIND_VERSION}"], check=True,
                       env={**os.environ, "GOBIN": str(gobin)})  # fmt: skip
    return str(gobin / "kind")


def node(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A command inside the kind node container."""
    return subprocess.run(["docker", "exec", NODE_CONTAINER, *command], capture_output=True, text=True, check=check)


def up() -> Path:
    kind = kind_binary()
    clusters = subprocess.run([kind, "get", "clusters"], capture_output=True, text=True).stdout.split()
    KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
    if CLUSTER not in clusters:
        subprocess.run([kind, "create", "cluster", "--name", CLUSTER, "--image", NODE_IMAGE, "--config", "-",
                        "--kubeconfig", str(KUBECONFIG), "--wait", "120s"], input=CONFIG, text=True,
                       check=True)  # fmt: skip
    else:
        subprocess.run([kind, "export", "kubeconfig", "--name", CLUSTER, "--kubeconfig", str(KUBECONFIG)],
                       check=True)  # fmt: skip
    if node("stat", "-f", "-c", "%T", "/sys/fs/bpf", check=False).stdout.strip() != "bpf_fs":
        node("mount", "-t", "bpf", "bpf", "/sys/fs/bpf")
    load_images()
    return KUBECONFIG


def load_images() -> None:
    """Build each image from its Dockerfile and load it into the node's
    containerd. An archive (docker save) rather than `kind load docker-image`:
    the latter fails with Docker's containerd image store (multi-platform
    index without the other platforms' blobs)."""
    kind = kind_binary()
    with tempfile.TemporaryDirectory(prefix="meshaccel-kind-") as tmp:
        for name, spec in IMAGES.items():
            ref = reference(name)
            archive = Path(tmp) / f"{name}.tar"
            subprocess.run(["docker", "build", "-f", str(REPO / spec.dockerfile), "-t", ref, str(REPO)], check=True)
            subprocess.run(["docker", "save", "-o", str(archive), ref], check=True)
            subprocess.run([kind, "load", "image-archive", "--name", CLUSTER, str(archive)], check=True)


def tag(container: str, source: str, target: str) -> None:
    """A second name for an image on a kind node (its containerd)."""
    subprocess.run(["docker", "exec", container, "ctr", "-n", "k8s.io", "images", "tag", "--force", source, target],
                   check=True, capture_output=True)  # fmt: skip


#: Run inside a throw-away container of the agent image on the node: the
#: node image has no bpftool, the agent image has our own reader.
_SOCKOPS_PROBE = (
    "import json; from meshaccel_agent.datapath.attach import our_sockops_on; "
    "print(json.dumps(our_sockops_on('/host-cgroup')))"
)


def meshaccel_sockops(container: str) -> list[int]:
    """IDs of meshaccel sockops programs attached to the kind node's cgroup2
    root, read by the agent image in a privileged container on that node."""
    res = subprocess.run(
        ["docker", "exec", container, "ctr", "-n", "k8s.io", "run", "--rm", "--privileged",
         "--mount", "type=bind,src=/sys/fs/cgroup,dst=/host-cgroup,options=rbind:ro",
         reference("agent"), f"meshaccel-sockops-{os.getpid()}", "python3", "-c", _SOCKOPS_PROBE],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"reading the node's cgroup programs failed: {res.stderr.strip()}")
    return [int(i) for i in json.loads(res.stdout.strip().splitlines()[-1])]


def down() -> None:
    subprocess.run([kind_binary(), "delete", "cluster", "--name", CLUSTER], check=True)
    KUBECONFIG.unlink(missing_ok=True)
