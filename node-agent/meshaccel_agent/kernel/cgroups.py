"""The agent's own short-lived cgroups (the self-test's private child).

A SIGKILLed agent skips every `finally`, so a self-test cgroup can outlive
it; the next start and `--cleanup` remove such leftovers.
"""

from __future__ import annotations

import glob
import os

SELFTEST_CGROUP_PREFIX = "meshaccel-selftest-"


def selftest_cgroup(parent: str) -> str:
    """The private cgroup this process's self-test runs in."""
    return os.path.join(parent, f"{SELFTEST_CGROUP_PREFIX}{os.getpid()}")


def remove_stale_selftest_cgroups(parent: str) -> int:
    """Remove self-test cgroups that killed agents left behind. Only empty
    ones can go: rmdir refuses a cgroup that still has processes, e.g.
    another agent's running self-test."""
    removed = 0
    for path in glob.glob(os.path.join(parent, SELFTEST_CGROUP_PREFIX + "*")):
        if path == selftest_cgroup(parent):
            continue
        try:
            os.rmdir(path)
            removed += 1
        except OSError:
            continue
    return removed
