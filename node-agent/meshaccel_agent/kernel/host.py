"""Host facilities the datapath needs: the cgroup2 mount and bpffs."""

from __future__ import annotations

import os
import subprocess


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) pairs from /proc/mounts, octal escapes decoded."""
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                point = parts[1].encode().decode("unicode_escape")
                out.append((point, parts[2]))
    return out


def find_cgroup2() -> str:
    """The cgroup2 mount: sockops attached at its root sees every socket.

    On hybrid hosts the v2 hierarchy sits at /sys/fs/cgroup/unified, on
    unified ones at /sys/fs/cgroup; never assume, read /proc/mounts.
    """
    for point, fstype in _mounts():
        if fstype == "cgroup2":
            return point
    raise RuntimeError("no cgroup2 filesystem is mounted; sockops programs need one")


def resolve_cgroup2(path: str) -> str:
    """@path if it is a cgroup2 directory, else the cgroup2 mount inside it.

    An agent pod sees the host's /sys/fs/cgroup at a hostPath; on a hybrid
    host (v1 controllers, the v2 tree at .../unified) that path is a tmpfs
    with the cgroup2 mount below it, on a unified host it is the cgroup2 root
    itself. Only cgroup2 directories have cgroup.controllers.
    """
    if os.path.isfile(os.path.join(path, "cgroup.controllers")):
        return path
    prefix = path.rstrip("/") + "/"
    inside = sorted((p for p, fstype in _mounts() if fstype == "cgroup2" and p.startswith(prefix)), key=len)
    if not inside:
        raise RuntimeError(f"{path} is not a cgroup2 directory and no cgroup2 filesystem is mounted inside it")
    return inside[0]


def is_bpffs(path: str) -> bool:
    return any(point == path and fstype == "bpf" for point, fstype in _mounts())


def ensure_bpffs(path: str) -> None:
    """Mount the bpf filesystem at @path unless it already is one (a host
    process: the mount is the host's; an agent pod never does this, its
    mount would die with it and take the pins along)."""
    if is_bpffs(path):
        return
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "bpf", "bpf", path], check=True, capture_output=True, text=True)
