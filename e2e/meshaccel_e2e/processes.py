"""The cluster's host processes: started detached (they outlive `e2e/up`),
one pid file and one log each, and one cgroup2 directory each.

The cgroup is how `down` finds what a component left running: containerd's
shims stay in containerd's cgroup after containerd exits, and writing
cgroup.kill ends every process in it at once. Only our own directories are
ever killed or removed, and a pid file is acted on only while /proc still
shows the binary that was started under it (a pid can be reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from meshaccel_e2e.layout import CGROUP_NAME, LOGS, PIDS


def cgroup2_root() -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, point, fstype, *_ = line.split()
        if fstype == "cgroup2":
            return Path(point)
    raise RuntimeError("no cgroup2 mount in /proc/self/mounts")


def our_cgroup(name: str = "") -> Path:
    return cgroup2_root() / CGROUP_NAME / name if name else cgroup2_root() / CGROUP_NAME


def start(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Start @cmd detached, inside our cgroup @name, logging to LOGS/@name.log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    group = our_cgroup(name)
    group.mkdir(parents=True, exist_ok=True)
    # The shell joins the cgroup, then becomes the component: nothing it
    # starts can be outside the cgroup, even for an instant.
    wrapper = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(group), *cmd]
    with (LOGS / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(wrapper, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})  # fmt: skip
    (PIDS / f"{name}.pid").write_text(f"{proc.pid} {cmd[0]}\n")
    # Until the shell has exec'd, /proc shows the shell, not the component.
    deadline = time.monotonic() + 10
    while running(name) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.pid


def running(name: str) -> int | None:
    """The pid of component @name if it is still the process we started."""
    try:
        pid_text, binary = (PIDS / f"{name}.pid").read_text().split()
        pid = int(pid_text)
        exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, ValueError):
        return None
    return pid if exe == binary else None


def stop(name: str, timeout: float = 20.0) -> None:
    pid = running(name)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while running(name) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if running(name) is not None:
            os.kill(pid, signal.SIGKILL)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)


def kill_cgroup(group: Path, timeout: float = 10.0) -> None:
    """End every process in @group and its children, then remove the tree."""
    if not group.is_dir():
        return
    if (group / "cgroup.kill").exists():
        (group / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(p.read_text().strip() for p in group.rglob("cgroup.procs")):
            break
        time.sleep(0.1)
    remove_tree(group)


def remove_tree(group: Path) -> None:
    """rmdir a cgroup directory tree, deepest first (cgroups hold no files)."""
    if not group.is_dir():
        return
    for child in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        group.rmdir()


def wait_until(check: object, what: str, timeout: float, log: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        if log and running(log) is None:
            raise RuntimeError(f"{log} exited; end of {LOGS / (log + '.log')}:\n{tail(log)}")
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s" + (f"; end of its log:\n{tail(log)}" if log else ""))


def tail(name: str, chars: int = 3000) -> str:
    try:
        return (LOGS / f"{name}.log").read_text(errors="replace")[-chars:]
    except OSError:
        return "<no log>"
