"""The configuration files and command lines of the cluster's components.

Pure functions of the layout and the host address, so what a component runs
with can be read in one place (and tested without starting anything).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from meshaccel_e2e.layout import (
    API_PORT,
    BIN,
    BRIDGE,
    CNI_CONF,
    CNI_IPAM,
    CONTAINERD_SOCK,
    ETCD_PEER_PORT,
    ETCD_PORT,
    KUBELET_ROOT,
    NODE_NAME,
    PAUSE_IMAGE,
    PKI,
    POD_CIDR,
    SERVICE_CIDR,
    STATE,
)

CONTAINERD_DIR = STATE / "containerd"


def kubeconfig(token: str, server: str = f"https://127.0.0.1:{API_PORT}") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(PKI / "ca.crt")}}],
            "users": [{"name": "e2e", "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}],
            "current-context": "e2e",
        }
    )


def etcd() -> list[str]:
    url = f"http://127.0.0.1:{ETCD_PORT}"
    peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
    return [str(BIN / "etcd"), "--name=e2e", f"--data-dir={STATE / 'etcd'}", f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}", f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e2e={peer}", "--unsafe-no-fsync", "--log-level=warn"]  # fmt: skip


def apiserver(host_ip: str) -> list[str]:
    return [
        str(BIN / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
        "--bind-address=0.0.0.0",
        f"--advertise-address={host_ip}",  # pods reach it through the `kubernetes` Service
        f"--secure-port={API_PORT}",
        f"--tls-cert-file={PKI / 'apiserver.crt'}",
        f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--client-ca-file={PKI / 'ca.crt'}",
        f"--kubelet-client-certificate={PKI / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={PKI / 'apiserver-kubelet-client.key'}",
        # The node's name is not in any DNS: reach kubelets by address.
        "--kubelet-preferred-address-types=InternalIP",
        f"--token-auth-file={PKI / 'tokens.csv'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={PKI / 'sa.pub'}",
        f"--service-account-signing-key-file={PKI / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",  # the agent's bpffs init container
        "--profiling=false",
    ]


def controller_manager() -> list[str]:
    kc = str(STATE / "kube-controller-manager.kubeconfig")
    return [str(BIN / "kube-controller-manager"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1", "--leader-elect=false",
            "--use-service-account-credentials=true", f"--service-account-private-key-file={PKI / 'sa.key'}",
            f"--root-ca-file={PKI / 'ca.crt'}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=false", "--controllers=*,-bootstrapsigner,-tokencleaner,-csrsigning",
            "--profiling=false"]  # fmt: skip


def scheduler() -> list[str]:
    kc = str(STATE / "kube-scheduler.kubeconfig")
    return [str(BIN / "kube-scheduler"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1", "--leader-elect=false",
            "--profiling=false"]  # fmt: skip


def containerd_config() -> str:
    """containerd 1.6 with the CRI plugin, every path under STATE.

    restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and runc fails
    every sandbox ("can't get final child's PID from pipe") when CRI asks for
    a lower oom_score_adj than containerd's own."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{CONTAINERD_DIR / "root"}"
state = "{CONTAINERD_DIR / "state"}"

[grpc]
  address = "{CONTAINERD_SOCK}"

[ttrpc]
  address = "{CONTAINERD_SOCK}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{CONTAINERD_DIR / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{CNI_CONF}"
"""


def containerd() -> list[str]:
    return ["/usr/bin/containerd", "--config", str(CONTAINERD_DIR / "config.toml")]


def cni_conflist() -> str:
    """A bridge with host-local addresses. No masquerading and no route off the
    machine is needed: pods talk to each other and to the host (the API
    server), never beyond (up also drops forwarding from pods to the uplink)."""
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": "meshaccel-e2e",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,  # a pod reaching itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(CNI_IPAM),
                    },
                }
            ],
        },
        indent=1,
    )


def kubelet_config() -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",  # no systemd as PID 1 here
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(PKI / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local",
            "clusterDNS": [],
            # No DNS server for pods: nothing of theirs may leave the machine.
            "resolvConf": str(STATE / "resolv.conf"),
            "failSwapOn": False,
            "podCIDR": POD_CIDR,
            "maxPods": 60,
            # Images cannot be pulled again here: never garbage-collect them,
            # and evict only when the disk is really full.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "healthzBindAddress": "127.0.0.1",
            # Container logs in the state folder, not /var/log/pods (the
            # kubelet still links them from /var/log/containers: down unlinks).
            "podLogsDir": str(STATE / "pod-logs"),
        }
    )


def kubelet(host_ip: str) -> list[str]:
    return [str(BIN / "kubelet"), f"--config={STATE / 'kubelet.yaml'}",
            f"--kubeconfig={STATE / 'kubelet.kubeconfig'}", f"--root-dir={KUBELET_ROOT}",
            f"--cert-dir={KUBELET_ROOT / 'pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={host_ip}", "--v=1"]  # fmt: skip


def kube_proxy_config() -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(STATE / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
            # Leave the host's conntrack limits and timeouts as they are.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            # No NodePorts on 127.0.0.1: that needs route_localnet=1 host-wide.
            "iptables": {"localhostNodePorts": False},
        }
    )


def kube_proxy() -> list[str]:
    return [str(BIN / "kube-proxy"), f"--config={STATE / 'kube-proxy.yaml'}"]


def write_all(host_ip: str, tokens: dict[str, str]) -> None:
    files: dict[Path, str] = {
        STATE / "admin.kubeconfig": kubeconfig(tokens["admin"]),
        STATE / "kube-controller-manager.kubeconfig": kubeconfig(tokens["kube-controller-manager"]),
        STATE / "kube-scheduler.kubeconfig": kubeconfig(tokens["kube-scheduler"]),
        STATE / "kubelet.kubeconfig": kubeconfig(tokens["kubelet"]),
        STATE / "kube-proxy.kubeconfig": kubeconfig(tokens["kube-proxy"]),
        STATE / "kubelet.yaml": kubelet_config(),
        STATE / "kube-proxy.yaml": kube_proxy_config(),
        STATE / "resolv.conf": "# meshaccel e2e: pods get no DNS server (nothing may leave the machine)\n",
        CONTAINERD_DIR / "config.toml": containerd_config(),
        CNI_CONF / "10-meshaccel-e2e.conflist": cni_conflist(),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if path.suffix == ".kubeconfig":
            path.chmod(0o600)
