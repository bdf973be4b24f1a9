"""`e2e/up` and `e2e/down`: a real single-node cluster as host processes.

up:   etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
      containerd (+ the pause image), kubelet, kube-proxy; waits for the node
      to be Ready and the `kubernetes` Service to answer from a pod's view.
down: deletes every pod through the kubelet (so CNI and the runtime tear
      their parts down), stops the components, ends what they left by
      cgroup, unmounts, removes the datapath meshaccel may have left on the
      host, restores iptables and sysctls, and checks the host is as `up`
      found it. Safe to run at any point, also after a failed `up`.

Both are idempotent: `up` on a running cluster only checks it, `down` with
nothing running only checks the host.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from meshaccel_e2e import configs, pki, processes
from meshaccel_e2e.hoststate import BPFFS, NETNS_DIR, HostState, bpffs_mounted, netns, netns_dir_mounted
from meshaccel_e2e.layout import (
    ADMIN_KUBECONFIG,
    API_PORT,
    BIN,
    BRIDGE,
    CONTAINERD_SOCK,
    ETCD_PORT,
    HOST_BEFORE,
    NODE_NAME,
    PKI,
    POD_CIDR,
    STATE,
    default_interface,
    host_ip,
)
from meshaccel_e2e.pause import import_pause

#: In start order; down stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet",
              "kube-proxy")  # fmt: skip
NEEDED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "pause")
#: Pods may talk to each other and to this host, never beyond: a packet from
#: the pod network that would be forwarded out of the uplink is dropped.
_NO_EGRESS = ["FORWARD", "-s", POD_CIDR, "!", "-d", POD_CIDR, "-j", "DROP"]


def log(msg: str) -> None:
    print(f"e2e: {msg}", flush=True)


def kubectl(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = ["kubectl", f"--kubeconfig={ADMIN_KUBECONFIG}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
    return res


def _api_ready() -> bool:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    token = pki.tokens(PKI).get("admin")
    if token is None:
        return False
    req = urllib.request.Request(f"https://127.0.0.1:{API_PORT}/readyz", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def _etcd_ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ETCD_PORT}/health", timeout=2) as r:
            return bool(json.load(r).get("health") == "true")
    except (OSError, ValueError):
        return False


def _node_ready() -> bool:
    res = kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
    if res.returncode != 0:
        return False
    conditions = json.loads(res.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def is_up() -> bool:
    return all(processes.running(c) for c in COMPONENTS) and _api_ready() and _node_ready()


def preflight() -> None:
    missing = [b for b in NEEDED if not (BIN / b).is_file()]
    if missing:
        raise SystemExit(f"e2e: {', '.join(missing)} missing in {BIN}: run scripts/build-k8s.sh")
    for tool in ("containerd", "runc", "ctr", "conntrack", "iptables", "kubectl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"e2e: {tool} is missing: run scripts/setup.sh")
    if not Path("/usr/lib/cni/bridge").exists():
        raise SystemExit("e2e: CNI plugins missing (/usr/lib/cni/bridge): run scripts/setup.sh")


def up() -> None:
    preflight()
    if is_up():
        log(f"already up; KUBECONFIG={ADMIN_KUBECONFIG}")
        return
    if STATE.exists():
        log("a previous cluster is partly there: taking it down first")
        down()
    started = time.monotonic()
    STATE.mkdir(parents=True)
    STATE.chmod(0o700)
    HOST_BEFORE.mkdir()
    HostState.record().write(HOST_BEFORE / "host.json")
    address = host_ip()
    tokens = pki.ensure(PKI, address)
    configs.write_all(address, tokens)
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")  # kube-proxy and the bridge route pod traffic
    if not bpffs_mounted():
        # What systemd does at boot on every distribution that has it; the
        # agent pod uses the node's bpffs and never mounts its own.
        subprocess.run(["mount", "-t", "bpf", "bpf", BPFFS], check=True)
    if not netns_dir_mounted():
        # What `ip netns add` does the first time it runs: /run/netns becomes
        # a shared bind mount of itself. Done before containerd names the
        # sandboxes' namespaces there, so that a later `ip netns add` (a
        # test's lab) finds the mount and stacks no second one over them:
        # their nsfs mounts, hidden below it, could not be unmounted and
        # their names not removed (EBUSY) when the cluster goes down.
        Path(NETNS_DIR).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", NETNS_DIR, NETNS_DIR], check=True)
        subprocess.run(["mount", "--make-shared", NETNS_DIR], check=True)
    subprocess.run(["iptables", "-I", *_NO_EGRESS[:1], "-o", default_interface(), *_NO_EGRESS[1:]], check=True)

    processes.start("etcd", configs.etcd())
    processes.wait_until(_etcd_ready, "etcd", 30, "etcd")
    processes.start("kube-apiserver", configs.apiserver(address))
    processes.wait_until(_api_ready, "kube-apiserver", 90, "kube-apiserver")
    processes.start("kube-controller-manager", configs.controller_manager())
    processes.start("kube-scheduler", configs.scheduler())
    processes.start("containerd", configs.containerd())
    processes.wait_until(CONTAINERD_SOCK.exists, "containerd", 30, "containerd")
    import_pause()
    processes.start("kubelet", configs.kubelet(address))
    processes.start("kube-proxy", configs.kube_proxy())
    processes.wait_until(_node_ready, f"node {NODE_NAME}", 120, "kubelet")
    processes.wait_until(lambda: _http_ok("http://127.0.0.1:10256/healthz"), "kube-proxy", 60, "kube-proxy")
    # The default ServiceAccount of a namespace comes from the controller-manager.
    processes.wait_until(lambda: kubectl("get", "sa", "default", check=False).returncode == 0,
                         "default ServiceAccount", 60, "kube-controller-manager")  # fmt: skip
    log(f"up in {time.monotonic() - started:.0f} s: node {NODE_NAME} Ready; KUBECONFIG={ADMIN_KUBECONFIG}")


def _delete_pods() -> None:
    """Every pod deleted through the API, so the kubelet stops each sandbox the
    normal way (CNI DEL: veth and address released; netns unmounted)."""
    if not (processes.running("kubelet") and _api_ready()):
        return
    processes.stop("kube-controller-manager")  # nothing recreates what we delete
    processes.stop("kube-scheduler")
    kubectl("delete", "daemonsets,deployments,replicasets,statefulsets,jobs", "--all", "-A", "--wait=false",
            check=False, timeout=60)  # fmt: skip
    kubectl("delete", "pods", "--all", "-A", "--grace-period=5", "--wait=false", check=False, timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(["ctr", "-a", str(CONTAINERD_SOCK), "-n", "k8s.io", "tasks", "ls", "-q"],
                             capture_output=True, text=True).stdout.split()  # fmt: skip
        if not out:
            return
        time.sleep(1)
    log("some pod tasks outlived their deletion: ending them by cgroup")


def _unmount_under(prefixes: tuple[str, ...]) -> None:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefixes):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_host_datapath() -> None:
    """An agent pod ended with its DaemonSet still there keeps the datapath
    (a restart must not drop it): on a cluster that goes away, remove it."""
    agent = Path(sys.executable).parent / "meshaccel-agent"
    if agent.exists():
        res = subprocess.run([str(agent), "cleanup", "--wait", "10"], capture_output=True, text=True)
        if res.returncode not in (0, 3):
            log(f"meshaccel-agent cleanup: {res.stderr.strip() or res.stdout.strip()}")


def down() -> list[str]:
    """Take the cluster down; returns what differs from the host `up` found."""
    before = HostState.read(HOST_BEFORE / "host.json") if (HOST_BEFORE / "host.json").exists() else None
    _delete_pods()
    for component in reversed(COMPONENTS):
        processes.stop(component)
    # Shims (containerd's cgroup) and any container process still alive.
    cgroup2 = processes.cgroup2_root()
    processes.kill_cgroup(processes.our_cgroup())
    processes.kill_cgroup(cgroup2 / "kubepods")
    for v1 in Path("/sys/fs/cgroup").iterdir():
        if (v1 / "kubepods").is_dir() and v1 != cgroup2:
            processes.remove_tree(v1 / "kubepods")  # the kubelet's v1 QoS tree, empty by now
    new_netns = [n for n in netns() if before is None or n not in before.netns]
    _unmount_under((str(STATE) + "/", *(f"/run/netns/{n}" for n in new_netns if n.startswith("cni-"))))
    for name in new_netns:
        if name.startswith("cni-"):
            Path(f"/run/netns/{name}").unlink(missing_ok=True)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    _remove_host_datapath()
    if before is not None and not before.bpffs and bpffs_mounted():
        subprocess.run(["umount", BPFFS], capture_output=True)
    if before is not None and not before.netns_dir and netns_dir_mounted() and not netns():
        subprocess.run(["umount", NETNS_DIR], capture_output=True)  # the bind up made (a lab's may remain)
    problems: list[str] = []
    if before is not None:
        _unmount_under(tuple(p + "/" for p in before.absent))
        before.remove_created_paths()
        before.restore_iptables()
        problems += [f"sysctl {s}: could not restore" for s in before.restore_sysctls()]
        problems += before.leftovers()
    problems += _leftover_mounts_and_cgroups()
    shutil.rmtree(STATE, ignore_errors=True)
    if STATE.exists():
        problems.append(f"{STATE} could not be removed")
    problems += [f"process {c}" for c in COMPONENTS if processes.running(c)]
    log("down: the host is as up found it" if not problems else "down left: " + "; ".join(problems))
    return problems


def _leftover_mounts_and_cgroups() -> list[str]:
    """Mounts of the cluster's (state folder, sandbox namespaces, kubelet
    volumes) and cgroups of the kubelet's or ours that are still there."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith((str(STATE) + "/", "/run/netns/cni-", "/var/lib/kubelet/", "/run/containerd/")):
            out.append(f"mount {point}")
    roots = [processes.cgroup2_root(), *(p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir())]
    for root in dict.fromkeys(roots):
        for name in ("kubepods", processes.our_cgroup().name):
            if (root / name).is_dir():
                out.append(f"cgroup {root / name}")
    return out
