"""The two host mounts a test session creates as a side effect, put back.

`ip netns add` bind-mounts /run/netns onto itself (iproute2 makes it shared
so namespaces created later propagate) and never unmounts it; the standalone
agent mounts a bpffs at /sys/fs/bpf when there is none, because its pins
must outlive it. Both are right for a host that runs the product and are
leftovers on a host that only ran the tests: `record()` before the session,
`restore()` after it unmounts each one the session created, if it is empty
(a bpffs holds only the kernel's own `*.debug` files of bpf_preload).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = "/run/netns"
BPFFS = "/sys/fs/bpf"


def mount_type(path: str) -> str | None:
    """The filesystem type mounted exactly at @path (the last mount wins)."""
    found = None
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == path:
            found = fields[2]
    return found


@dataclass(frozen=True)
class HostMounts:
    netns_mounted: bool
    netns_existed: bool
    bpffs_mounted: bool

    @classmethod
    def record(cls) -> HostMounts:
        return cls(mount_type(NETNS_DIR) is not None, os.path.isdir(NETNS_DIR), mount_type(BPFFS) == "bpf")

    def restore(self) -> list[str]:
        """Undo what the session mounted; returns what had to stay (in use)."""
        kept = []
        if not self.netns_mounted and mount_type(NETNS_DIR) is not None:
            if os.listdir(NETNS_DIR):
                kept.append(f"{NETNS_DIR}: namespaces still there: {sorted(os.listdir(NETNS_DIR))}")
            else:
                subprocess.run(["umount", NETNS_DIR], check=True)
                if not self.netns_existed:
                    os.rmdir(NETNS_DIR)
        if not self.bpffs_mounted and mount_type(BPFFS) == "bpf":
            pinned = [n for n in os.listdir(BPFFS) if not n.endswith(".debug")]
            if pinned:
                kept.append(f"{BPFFS}: still pinned: {sorted(pinned)}")
            else:
                subprocess.run(["umount", BPFFS], check=True)
        return kept
