"""Find a pod's network namespace from its UID, in a way pods cannot forge.

The operator names pods by UID (assigned by the API server) and lists the IPs
the API server recorded. The agent resolves UID -> cgroup -> processes ->
/proc/PID/ns/net:

* The pod's cgroup directory is created by the kubelet and named after the
  pod UID. A pod cannot create or enter another pod's cgroup (it sees only its
  own cgroup namespace, read-only), so the processes found there belong to the
  pod the API server means.
* Every process of a pod must share one network namespace (the sandbox's),
  and it must not be the node's: otherwise the pod is refused.
* Each IP the operator lists must be local in that namespace (a bind() test).
  A pod with CAP_NET_ADMIN can add a neighbour's IP to its own interface, but
  the operator never lists that IP for it, so the datapath still maps the IP to
  its real owner only.
* Two pods resolving to one namespace are both refused.

Nothing here trusts an IP found on an interface, a netns name, or anything
else a pod can choose.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from meshaccel_agent.kernel.cgroups import pod_cgroup_candidates
from meshaccel_agent.kernel.netns import current_netns_cookie, in_netns


class Problem:
    """Machine-readable reasons a pod is not enrolled (NodeEnrolment status)."""

    CGROUP_NOT_FOUND = "PodCgroupNotFound"
    NO_PROCESSES = "NoProcesses"
    NETNS_MISMATCH = "NetnsMismatch"
    HOST_NETNS = "HostNetwork"
    IP_NOT_LOCAL = "IPNotInNetns"
    NETNS_SHARED = "NetnsShared"
    NETNS_UNREADABLE = "NetnsUnreadable"


class ResolveError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PodNetns:
    path: str  # /proc/PID/ns/net of one of the pod's processes
    cookie: int


def _pids(cgroup: Path) -> list[int]:
    pids: list[int] = []
    for procs in [cgroup / "cgroup.procs", *sorted(cgroup.glob("*/cgroup.procs"))]:
        try:
            pids.extend(int(line) for line in procs.read_text().split())
        except OSError:
            continue  # a container exited while we looked
    return pids


def _netns_id(pid: int, proc: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(proc / str(pid) / "ns" / "net")
    except OSError:
        return None  # exited
    return st.st_dev, st.st_ino


def _probe(path: str, ips: list[str]) -> tuple[int, list[str]]:
    """Inside the namespace at @path: its cookie, and which @ips are not local."""

    def probe() -> tuple[int, list[str]]:
        missing = []
        for ip in ips:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((ip, 0))  # succeeds only for an address of this netns
                except OSError as exc:
                    if exc.errno != errno.EADDRNOTAVAIL:
                        raise
                    missing.append(ip)
        return current_netns_cookie(), missing

    return in_netns(path, probe)


def resolve_pod(cgroup_root: Path, uid: str, ips: list[str], proc: Path = Path("/proc")) -> PodNetns:
    """The network namespace of pod @uid, verified to hold @ips; ResolveError if not."""
    cgroup = next((c for c in pod_cgroup_candidates(cgroup_root, uid) if c.is_dir()), None)
    if cgroup is None:
        raise ResolveError(Problem.CGROUP_NOT_FOUND, f"no kubelet cgroup for pod UID {uid} under {cgroup_root}")
    seen: dict[tuple[int, int], int] = {}
    for pid in _pids(cgroup):
        ident = _netns_id(pid, proc)
        if ident is not None:
            seen.setdefault(ident, pid)
    if not seen:
        raise ResolveError(Problem.NO_PROCESSES, f"no running process in {cgroup}")
    if len(seen) > 1:
        raise ResolveError(Problem.NETNS_MISMATCH, f"processes of {cgroup} are in {len(seen)} network namespaces")
    ((ident, pid),) = seen.items()
    if ident == _netns_id(1, proc):
        raise ResolveError(Problem.HOST_NETNS, "the pod's processes are in the node's network namespace")
    path = str(proc / str(pid) / "ns" / "net")
    try:
        cookie, missing = _probe(path, ips)
    except OSError as exc:
        raise ResolveError(Problem.NETNS_UNREADABLE, str(exc)) from None
    if missing:
        raise ResolveError(Problem.IP_NOT_LOCAL, f"{', '.join(missing)} not configured in the pod's namespace")
    return PodNetns(path, cookie)
