"""Uninstall: detach every generation, unpin each once it is drained.

Established accelerated connections keep working: their sockets stay in
their sockhash (with its sk_msg program) until they close. Deleting a live
socket's entry, or freeing its map, would purge bytes its reader has not
consumed yet, so a generation that still carries connections keeps its pins
and a later cleanup finishes the job.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass

from meshaccel_agent.datapath.attach import detach_sockops_by_id, our_sockops_on
from meshaccel_agent.datapath.pins import PinRoot
from meshaccel_agent.kernel.cgroups import remove_stale_selftest_cgroups


@dataclass(frozen=True)
class CleanupReport:
    detached: int
    unpinned: int
    live_sockets: int
    nothing_installed: bool


def cleanup(bpffs: str, cgroup: str, wait_seconds: float = 0.0) -> CleanupReport:
    """Detach everything of ours from @cgroup and unpin drained generations,
    waiting up to @wait_seconds for live connections to close."""
    remove_stale_selftest_cgroups(cgroup)
    pins = PinRoot(bpffs)
    orphans = our_sockops_on(cgroup)
    if not pins.path.exists() and not orphans:
        return CleanupReport(0, 0, 0, True)
    detached = 0
    # Whatever of ours is attached, pinned or not (pins removed by hand, a
    # generation from another bpffs mount): no new connection enrols.
    for prog_id in orphans:
        with contextlib.suppress(OSError):  # detached meanwhile
            detached += int(detach_sockops_by_id(cgroup, prog_id))
    deadline = time.monotonic() + wait_seconds
    unpinned = 0
    while True:
        live = 0
        for gen in list(pins.generations()):
            try:
                n = len(gen.sockhash_keys())
            except OSError:
                n = 0
            if n == 0:
                gen.unpin()
                unpinned += 1
            live += n
        if live == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    pins.clear_staging()
    if live == 0:
        shutil.rmtree(pins.path, ignore_errors=True)
    return CleanupReport(detached, unpinned, live, False)
