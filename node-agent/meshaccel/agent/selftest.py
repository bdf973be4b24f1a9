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

The child runs as `python -m meshaccel.agent.selftest FD` in the private
namespace and cgroup; it prints its netns cookie, waits for "go", runs the
checks and prints one JSON line.
"""

from __future__ import annotations

import array
import ctypes as ct
import ctypes.util
import fcntl
import glob
import json
import logging
import os
import select
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ESSENTIAL = ("redirect", "large_write", "fionread", "epoll_wakeup")
INFORMATIONAL = ("stack_fionread",)
CLONE_NEWNET = 0x40000000


@dataclass
class SelfTestReport:
    passed: dict[str, bool] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.passed.get(c, False) for c in ESSENTIAL)

    def failed(self) -> list[str]:
        return [c for c in ESSENTIAL if not self.passed.get(c, False)]


# -- parent side -----------------------------------------------------------


SELFTEST_CGROUP_PREFIX = "meshaccel-selftest-"


def remove_stale_cgroups(parent: str) -> int:
    """Remove self-test cgroups a killed agent left behind (SIGKILL during
    start-up skips every finally). Only empty ones can go: rmdir refuses a
    cgroup that still has processes, e.g. another agent's running self-test."""
    removed = 0
    for path in glob.glob(os.path.join(parent, SELFTEST_CGROUP_PREFIX + "*")):
        if path.endswith(f"-{os.getpid()}"):
            continue
        try:
            os.rmdir(path)
            removed += 1
        except OSError:
            continue
    return removed


def run_selftest(datapath: object, timeout: float = 60.0) -> SelfTestReport:
    """Run the checks against @datapath (a prepared meshaccel Datapath)."""
    from meshaccel.agent.datapath import Datapath, attach_sockops, detach_sockops
    from meshaccel.agent.layout import Counter, NetnsInfo

    assert isinstance(datapath, Datapath)
    report = SelfTestReport()
    if stale := remove_stale_cgroups(datapath.cgroup):
        log.info("self-test: removed %d cgroup(s) left by a killed agent", stale)
    cgroup = os.path.join(datapath.cgroup, f"{SELFTEST_CGROUP_PREFIX}{os.getpid()}")
    os.makedirs(cgroup, exist_ok=True)
    private_attach = not datapath.sockops_attached()
    cookie = 0
    child: subprocess.Popen[str] | None = None
    try:
        with datapath._current_fds("sockops", "ma_sockhash") as (sockops, sockhash):
            if private_attach:
                attach_sockops(sockops, cgroup)
            child = subprocess.Popen(
                [sys.executable, "-m", "meshaccel.agent.selftest", str(sockhash)],
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
            datapath.netns_map().update(cookie.to_bytes(8, "little"), bytes(NetnsInfo()))
            before = datapath.counters()
            child.stdin.write("go\n")
            child.stdin.flush()
            out, err = child.communicate(timeout=timeout)
            after = datapath.counters()
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
        for check in ESSENTIAL:
            report.passed.setdefault(check, False)
            report.details.setdefault(check, f"self-test could not run: {exc}")
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if cookie:
            datapath.netns_map().delete(cookie.to_bytes(8, "little"))
        if private_attach:
            try:
                with datapath._current_fds("sockops") as (sockops,):
                    detach_sockops(sockops, cgroup)
            except OSError as exc:
                log.warning("self-test: detaching from %s: %s", cgroup, exc)
        try:
            os.rmdir(cgroup)
        except OSError as exc:
            log.warning("self-test: removing %s: %s", cgroup, exc)
    return report


def _enter_private(cgroup: str):  # type: ignore[no-untyped-def]
    def enter() -> None:
        # Runs in the child between fork and exec.
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write("0")
        libc = ct.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ct.get_errno(), "unshare(CLONE_NEWNET)")

    return enter


# -- child side ------------------------------------------------------------


def _pair(port: int) -> tuple[socket.socket, socket.socket]:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    server, _ = srv.accept()
    server.settimeout(10)
    srv.close()
    return client, server


def _recv_exact(s: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        d = s.recv(min(n, 1 << 20))
        if not d:
            raise ConnectionError("EOF")
        chunks.append(d)
        n -= len(d)
    return b"".join(chunks)


def _fionread(s: socket.socket) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(s.fileno(), termios.FIONREAD, buf, True)
    return int(buf[0])


def _check_redirect() -> tuple[bool, str]:
    client, server = _pair(7401)
    with client, server:
        msg = os.urandom(1 << 20)
        t = threading.Thread(target=lambda: server.sendall(_recv_exact(server, len(msg))))
        t.start()
        client.sendall(msg)
        ok = _recv_exact(client, len(msg)) == msg
        t.join()
        return ok, "1 MiB echo byte-exact" if ok else "echo differs"


def _check_large_write() -> tuple[bool, str]:
    client, server = _pair(7402)
    with client, server:
        size = 32 << 20
        got = [0]

        def drain() -> None:
            while got[0] < size:
                d = server.recv(1 << 20)
                if not d:
                    return
                got[0] += len(d)

        t = threading.Thread(target=drain)
        t.start()
        t0 = time.monotonic()
        client.sendall(b"\0" * size)
        t.join(10)
        took = time.monotonic() - t0
        return got[0] == size and took < 10, f"{got[0]} of {size} bytes in {took:.2f}s"


def _check_fionread() -> tuple[bool, str]:
    client, server = _pair(7403)
    with client, server:
        client.sendall(b"x" * 4096)
        deadline = time.monotonic() + 2
        n = 0
        while time.monotonic() < deadline and n < 4096:
            n = _fionread(server)
            time.sleep(0.005)
        return n == 4096, f"FIONREAD={n} after 4096 bytes"


def _check_epoll_wakeup() -> tuple[bool, str]:
    client, server = _pair(7404)
    with client, server:
        ep = select.epoll()
        ep.register(server.fileno(), select.EPOLLIN)
        threading.Timer(0.05, lambda: client.sendall(b"!")).start()
        t0 = time.monotonic()
        events = ep.poll(2)
        took = time.monotonic() - t0
        ep.close()
        return bool(events), f"woken after {took * 1000:.0f} ms" if events else "no wakeup within 2 s"


def _check_stack_fionread(sockhash_fd: int, client: socket.socket, server: socket.socket) -> tuple[bool, str]:
    """Put a socket into the sockhash by hand, feed it through the stack.

    The pair was connected before the namespace was enrolled, so the
    programs left it alone; this is the half-enrolled state meshaccel avoids.
    """
    from meshaccel.agent import syscalls as sc
    from meshaccel.agent.layout import SockKey
    from meshaccel.agent.netns import SO_NETNS_COOKIE

    with client, server:
        cookie = int.from_bytes(server.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
        key = bytes(SockKey(netns=cookie, local_port=7405, remote_port=client.getsockname()[1]))
        m = sc.RawMap(sockhash_fd, len(key), 4)
        m.update(key, server.fileno().to_bytes(4, "little"), sc.BPF_NOEXIST)
        try:
            client.sendall(b"y" * 1000)
            time.sleep(0.05)
            n = _fionread(server)
        finally:
            m.delete(key)  # nothing was redirected to it: nothing to lose
        return n == 1000, f"FIONREAD={n} after 1000 stack bytes"


def child_main(sockhash_fd: int) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    unenrolled_pair = _pair(7405)  # connected before enrolment: never paired
    with socket.socket() as s:
        from meshaccel.agent.netns import SO_NETNS_COOKIE

        print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little"), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    results: dict[str, tuple[bool, str]] = {}
    checks: dict[str, Callable[[], tuple[bool, str]]] = {
        "redirect": _check_redirect,
        "large_write": _check_large_write,
        "fionread": _check_fionread,
        "epoll_wakeup": _check_epoll_wakeup,
        "stack_fionread": lambda: _check_stack_fionread(sockhash_fd, *unenrolled_pair),
    }
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:
            results[name] = (False, f"{type(exc).__name__}: {exc}")
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1])))
