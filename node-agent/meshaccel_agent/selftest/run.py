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
  flow_control   a writer facing a sleeping reader meets EAGAIN within the
                 bound plus TCP's buffers, and every byte arrives
  half_close     a blocking recv() after shutdown(SHUT_WR) waits for the
                 reply instead of failing with EAGAIN
  boundary_read  a spilled direction's writer shuts down while its reader
                 is behind: the read that ends at the last redirected byte
                 comes without RDHUP (the FIN gate holds the FIN)
  stack_fionread informational: FIONREAD of a socket in a sockhash that
                 receives stack data (0 on kernels with 929e30f93125)
  blocking_read_signal
                 informational: a signal during a blocking recv() on an
                 accelerated socket (EAGAIN on every kernel so far)

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
from meshaccel_agent.kernel.cgroups import make_selftest_cgroup, remove_stale_selftest_cgroups
from meshaccel_agent.kernel.layout import Counter, NetnsInfo

log = logging.getLogger(__name__)

ESSENTIAL = ("redirect", "large_write", "fionread", "epoll_wakeup", "flow_control", "half_close", "boundary_read")
INFORMATIONAL = ("stack_fionread", "blocking_read_signal")


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


def _attach_gate_privately(gen: Generation, cgroup: str) -> int:
    """The generation's FIN gate on the private cgroup, by an unpinned link
    (returned; closing it detaches)."""
    prog = gen.fd("fin_gate")
    cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return sc.link_create(prog, cg, sc.BPF_CGROUP_INET_INGRESS)
    finally:
        os.close(cg)
        os.close(prog)


def run_selftest(gen: Generation, cgroup_root: str, flow_bound: int, timeout: float = 60.0) -> SelfTestReport:
    """Run the checks against the pinned generation @gen; @cgroup_root is
    where its sockops program is (or will be) attached, @flow_bound the bound
    its connections use."""
    report = SelfTestReport()
    if stale := remove_stale_selftest_cgroups(cgroup_root):
        log.info("self-test: removed %d cgroup(s) left by a killed agent", stale)
    cgroup = ""
    private_attach = False
    cookie = 0
    gate_link = -1
    child: subprocess.Popen[str] | None = None
    netns = sc.RawMap(gen.fd("ma_netns"), 8, ct.sizeof(NetnsInfo))
    sockops, sockhash = gen.fd("sockops"), gen.fd("ma_sockhash")
    try:
        cgroup = make_selftest_cgroup(cgroup_root)
        private_attach = not gen.sockops_attached(cgroup_root)
        if private_attach:
            gate_link = _attach_gate_privately(gen, cgroup)
            attach_sockops(sockops, cgroup)
        child = subprocess.Popen(
            [sys.executable, "-m", "meshaccel_agent.selftest.child", str(sockhash), str(flow_bound)],
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
        moved = {c: after[c] - before[c] for c in Counter}
        # The echo (2 MiB both ways) was redirected, or read from the stack
        # once past the bound; the first bound's worth must be redirected.
        carried = moved[Counter.REDIR_BYTES] + moved[Counter.STACK_READ_BYTES]
        if report.passed["redirect"] and (
            moved[Counter.PAIRS] < 1 or carried < 2 << 20 or moved[Counter.REDIR_BYTES] < min(flow_bound, 2 << 20)
        ):
            report.passed["redirect"] = False
            report.details["redirect"] = (
                f"echo arrived, but not redirected ({moved[Counter.PAIRS]} pairs, "
                f"{moved[Counter.REDIR_BYTES]} B redirected)"
            )
        if report.passed["flow_control"] and moved[Counter.FLOW_SPILLS] < 1:
            report.passed["flow_control"] = False
            report.details["flow_control"] += "; but no direction was switched to the stack"
        if report.passed["half_close"] and moved[Counter.HALF_CLOSE_UNENROLLED] < 1:
            report.passed["half_close"] = False
            report.details["half_close"] += "; but the socket did not leave the sockhash"
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
        if gate_link >= 0:
            os.close(gate_link)  # the link's last reference: detaches it
        netns.close()
        if cgroup and os.path.isdir(cgroup):
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
