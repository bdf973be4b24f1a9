"""The agent's own short-lived cgroups (the self-test's private child).

Where: under the agent's own cgroup when it can tell which that is (in a pod,
the container's cgroup: root owns it, so creating a child needs no
CAP_DAC_OVERRIDE, and the runtime removes it with the container), else at
the cgroup2 root (a host process). The root of a cgroup2 mount may well be
read-only to anyone but a fully privileged root (mode 0555 on some hosts).

A SIGKILLed agent skips every `finally`, so a self-test cgroup can outlive
it; the next start and `cleanup` remove such leftovers.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

SELFTEST_CGROUP_PREFIX = "meshaccel-selftest-"


def own_cgroup(root: str, proc_cgroup: str = "/proc/self/cgroup", pod_uid: str | None = None) -> str | None:
    """This process's cgroup2 directory under @root (the same cgroup2 tree
    seen at another path, e.g. a hostPath), or None when unknown.

    Inside a private cgroup namespace (the default of cgroup2 runtimes) the
    "0::" line says only "/"; then, in a pod (@pod_uid, from the downward
    API), the container's cgroup is the child of the pod's cgroup whose
    cgroup.procs lists our PID (the kernel shows PIDs as the reader's PID
    namespace sees them)."""
    for line in Path(proc_cgroup).read_text().splitlines():
        if line.startswith("0::"):
            rel = line[3:].strip().lstrip("/")
            if rel:
                path = os.path.join(root, rel)
                return path if os.path.isdir(path) else None
    return _own_cgroup_in_pod(Path(root), pod_uid) if pod_uid else None


def _own_cgroup_in_pod(root: Path, pod_uid: str) -> str | None:
    me = str(os.getpid())
    for pod in pod_cgroup_candidates(root, pod_uid):
        for procs in pod.glob("*/cgroup.procs"):
            try:
                if me in procs.read_text().split():
                    return str(procs.parent)
            except OSError:
                continue  # a container exited while we looked
    return None


def pod_cgroup_candidates(root: Path, uid: str) -> list[Path]:
    """Where the kubelet puts a pod's cgroup: for both cgroup drivers, every
    QoS class, and both usual --cgroup-root values ("/" by default, "/kubelet"
    on kind and other nodes that run in a container). The systemd driver
    names each slice after its parents and escapes '-' in the UID as '_'."""
    under = uid.replace("-", "_")
    found: list[Path] = []
    for prefix in ("", "kubelet"):
        name = f"{prefix}-kubepods" if prefix else "kubepods"
        systemd = (root / f"{prefix}.slice" if prefix else root) / f"{name}.slice"
        cgroupfs = root / prefix / "kubepods" if prefix else root / "kubepods"
        found += [
            systemd / f"{name}-pod{under}.slice",
            systemd / f"{name}-burstable.slice" / f"{name}-burstable-pod{under}.slice",
            systemd / f"{name}-besteffort.slice" / f"{name}-besteffort-pod{under}.slice",
            cgroupfs / f"pod{uid}",
            cgroupfs / "burstable" / f"pod{uid}",
            cgroupfs / "besteffort" / f"pod{uid}",
        ]
    return found


def selftest_parents(root: str) -> list[str]:
    """Where a self-test cgroup may go, best first."""
    own = own_cgroup(root, pod_uid=os.environ.get("POD_UID"))
    return [own, root] if own and os.path.realpath(own) != os.path.realpath(root) else [root]


def selftest_cgroup(parent: str) -> str:
    """The private cgroup this process's self-test runs in, under @parent."""
    return os.path.join(parent, f"{SELFTEST_CGROUP_PREFIX}{os.getpid()}")


def make_selftest_cgroup(root: str) -> str:
    """Create this process's self-test cgroup; the first parent that lets us."""
    errors = []
    for parent in selftest_parents(root):
        path = selftest_cgroup(parent)
        try:
            os.makedirs(path, exist_ok=True)
            return path
        except OSError as exc:
            errors.append(f"{parent}: {exc.strerror}")
    raise OSError(f"cannot create a self-test cgroup ({'; '.join(errors)})")


def remove_stale_selftest_cgroups(root: str) -> int:
    """Remove self-test cgroups that killed agents left behind. Only empty
    ones can go: rmdir refuses a cgroup that still has processes, e.g.
    another agent's running self-test."""
    removed = 0
    for parent in selftest_parents(root):
        for path in glob.glob(os.path.join(parent, SELFTEST_CGROUP_PREFIX + "*")):
            if path == selftest_cgroup(parent):
                continue
            try:
                os.rmdir(path)
                removed += 1
            except OSError:
                continue
    return removed
