"""Kernel self-test at start: does acceleration work, safely, on this kernel?

Runs the real programs and maps of the generation about to be attached, on
a loopback connection inside a private network namespace, from a process in
a private child cgroup. When the programs are not attached to the cgroup2
root yet, they are attached to that private cgroup only, so a kernel that
fails never gets a root attachment. Checks:

  redirect       a 1 MiB echo is paired and redirected, byte-exact
  large_write    a 32 MiB write completes promptly (stalls seen on 6.12.x)
  fionread       FIONREAD reports redirected bytes
  epoll_wakeup   epoll wakes a reader for a redirected message
  stack_fionread informational: FIONREAD of a socket in a sockhash that
                 receives stack data (0 on kernels with 929e30f93125);
                 meshaccel never leaves a socket in that state by design

The child (selftest/child.py) prints its netns cookie, waits for "go", runs
the checks and prints one JSON line.
"""

from __future__ import annotations

import ctypes as ct
import ctypes.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from meshaccel_agent.datapath.attach import attach_sockops, detach_sockops
from meshaccel_agent.datapath.pins import Generation, u64
from meshaccel_agent.kernel import syscalls as sc
from meshaccel_agent.kernel.cgroups import remove_stale_selftest_cgroups, selftest_cgroup
from meshaccel_agent.kernel.layout import Counter, NetnsInfo

log = logging.getLogger(__name__)

ESSENTIAL = ("redirect", "large_write", "fionread", "epoll_wakeup")
INFORMATIONAL = ("stack_fionread",)


@dataclass
class SelfTestReport:
    passed: dict[str, bool] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.passed.get(c, False) for c in ESSENTIAL)

    def failed(self) -> list[str]:
        return [c for c in ESSENTIAL if not self.passed.get(c, False)]

    def fail_all(self, why: str) -> None:
        for check in ESSENTIAL:
            self.passed.setdefault(check, False)
            self.details.setdefault(check, f"self-test could not run: {why}")


def run_selftest(gen: Generation, cgroup_root: str, timeout: float = 60.0) -> SelfTestReport:
    """Run the checks against the pinned generation @gen; @cgroup_root is
    where its sockops program is (or will be) attached."""
    report = SelfTestReport()
    if stale := remove_stale_selftest_cgroups(cgroup_root):
        log.info("self-test: removed %d cgroup(s) left by a killed agent", stale)
    cgroup = selftest_cgroup(cgroup_root)
    private_attach = False
    cookie = 0
    child: subprocess.Popen[str] | None = None
    netns = sc.RawMap(gen.fd("ma_netns"), 8, ct.sizeof(NetnsInfo))
    sockops, sockhash = gen.fd("sockops"), gen.fd("ma_sockhash")
    try:
        os.makedirs(cgroup, exist_ok=True)
        private_attach = not gen.sockops_attached(cgroup_root)
        if private_attach:
            attach_sockops(sockops, cgroup)
        child = subprocess.Popen(
            [sys.executable, "-m", "meshaccel_agent.selftest.child", str(sockhash)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(sockhash,),
            preexec_fn=_enter_private(cgroup),
        )
        assert child.stdin is not None and child.stdout is not None
        cookie = int(child.stdout.readline().strip() or 0)
        if not cookie:
            raise RuntimeError(f"self-test child failed to start: {child.stderr.read() if child.stderr else ''}")
        netns.update(u64(cookie), bytes(NetnsInfo()))
        before = gen.counters()
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=timeout)
        after = gen.counters()
        results = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        for check in ESSENTIAL + INFORMATIONAL:
            ok, detail = results.get(check, [False, f"no result ({err.strip()[-200:]})"])
            report.passed[check] = bool(ok)
            report.details[check] = str(detail)
        pairs = after[Counter.PAIRS] - before[Counter.PAIRS]
        redirected = after[Counter.REDIR_BYTES] - before[Counter.REDIR_BYTES]
        if report.passed["redirect"] and (pairs < 1 or redirected < 2 << 20):
            report.passed["redirect"] = False
            report.details["redirect"] = f"echo arrived, but not redirected ({pairs} pairs, {redirected} B)"
    except Exception as exc:  # any failure to even run the test is a failed test
        report.fail_all(str(exc))
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if cookie:
            netns.delete(u64(cookie))
        if private_attach:
            try:
                detach_sockops(sockops, cgroup)
            except OSError as exc:
                log.warning("self-test: detaching from %s: %s", cgroup, exc)
        for fd in (sockops, sockhash):
            os.close(fd)
        netns.close()
        if os.path.isdir(cgroup):
            try:
                os.rmdir(cgroup)
            except OSError as exc:
                log.warning("self-test: removing %s: %s", cgroup, exc)
    return report


def _enter_private(cgroup: str) -> Callable[[], None]:
    def enter() -> None:
        # Runs in the child between fork and exec.
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write("0")
        libc = ct.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.unshare(sc.CLONE_NEWNET) != 0:
            raise OSError(ct.get_errno(), "unshare(CLONE_NEWNET)")

    return enter
