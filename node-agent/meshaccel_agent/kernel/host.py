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


def ensure_bpffs(path: str) -> None:
    """Mount the bpf filesystem at @path unless it already is one."""
    if any(point == path and fstype == "bpf" for point, fstype in _mounts()):
        return
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "bpf", "bpf", path], check=True, capture_output=True, text=True)
