"""The self-test's child: runs inside a private network namespace (and the
cgroup the parent chose), prints its netns cookie, waits for "go" on stdin,
runs the checks and prints one JSON line {check: [passed, detail]}.

    python -m meshaccel_agent.selftest.child SOCKHASH_FD
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import select
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable

from meshaccel_agent.kernel import syscalls as sc
from meshaccel_agent.kernel.layout import SockKey
from meshaccel_agent.kernel.netns import current_netns_cookie


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
    with client, server:
        cookie = current_netns_cookie()
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
    print(current_netns_cookie(), flush=True)
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
