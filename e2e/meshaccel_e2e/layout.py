"""Where the local cluster lives and the addresses it uses.

Everything the cluster writes is under STATE: certificates, etcd, the
containerd store and socket, the kubelet's root, CNI state, logs and pid
files. `e2e/down` removes it after undoing what the cluster did to the host.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

K8S_VERSION = "1.30.4"
BIN = Path(f"/var/cache/meshaccel/k8s/v{K8S_VERSION}")
STATE = Path("/var/lib/meshaccel-e2e")
NODE_NAME = "meshaccel-e2e"

# Clear of the host's networks and of the lab's 10.240.0.0/24 and 10.96.0.0/16.
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.97.0.0/16"
API_SERVICE_IP = "10.97.0.1"  # the first service address: the `kubernetes` Service
API_PORT = 6443
ETCD_PORT, ETCD_PEER_PORT = 2379, 2380
BRIDGE = "cni0"
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"  # what containerd's sandbox_image names

PKI = STATE / "pki"
LOGS = STATE / "logs"
PIDS = STATE / "pids"
CONTAINERD_SOCK = STATE / "run" / "containerd.sock"
KUBELET_ROOT = STATE / "kubelet"
CNI_CONF = STATE / "cni" / "net.d"
CNI_IPAM = STATE / "cni" / "ipam"
HOST_BEFORE = STATE / "host-before"  # what up recorded of the host, for down
ADMIN_KUBECONFIG = STATE / "admin.kubeconfig"
#: The cgroup2 directory (under the host's cgroup2 root) holding our processes.
CGROUP_NAME = "meshaccel-e2e"


def host_ip() -> str:
    """The address of the interface with the default route: what the API
    server advertises, so pods reach it through the `kubernetes` Service.
    (No packet is sent: connect() on UDP only picks the source address.)"""
    route = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True).stdout.split()
    if "via" not in route:
        raise RuntimeError("no IPv4 default route: cannot choose the address the API server advertises")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((route[route.index("via") + 1], 9))
        return str(s.getsockname()[0])


def default_interface() -> str:
    route = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True).stdout.split()
    return route[route.index("dev") + 1]
