"""The self-test's child: runs inside a private network namespace (and the
cgroup the parent chose), prints its netns cookie, waits for "go" on stdin,
runs the checks and prints one JSON line {check: [passed, detail]}.

    python -m meshaccel_agent.selftest.child SOCKHASH_FD FLOW_BOUND
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import select
import signal
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


_SO_RCVBUFFORCE = 33  # include/uapi/asm-generic/socket.h


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


def _check_flow_control(bound: int) -> tuple[bool, str]:
    """A non-blocking writer and a reader that sleeps: the writer must meet
    EAGAIN (the stack's window) long before it queued without limit."""
    client, server = _pair(7406)
    with client, server:
        client.setblocking(False)
        limit = bound + (64 << 20)
        accepted = 0
        chunk = b"f" * (1 << 20)
        while accepted < limit:
            try:
                accepted += client.send(chunk)
            except BlockingIOError:
                break
        else:
            return False, f"{accepted} bytes accepted without EAGAIN: redirects are not bounded"
        got = 0
        server.settimeout(10)
        client.shutdown(socket.SHUT_WR)
        while True:
            d = server.recv(1 << 20)
            if not d:
                break
            if d.strip(b"f"):
                return False, "the stream arrived changed"
            got += len(d)
        return got == accepted, f"EAGAIN after {accepted} bytes (bound {bound}); {got} read back"


def _check_boundary_read(bound: int) -> tuple[bool, str]:
    """A spilled direction whose writer shuts down while the reader is
    behind, with a window wide enough for the FIN to come in at once: the
    read that drains the redirected bytes stops short, and must not come
    with RDHUP while stack bytes wait behind it (the FIN gate holds the FIN),
    or an event loop that takes that for the end loses them."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 16 << 20)
    srv.bind(("127.0.0.1", 7409))
    srv.listen(1)
    client = socket.create_connection(("127.0.0.1", 7409), timeout=10)
    server, _ = srv.accept()
    srv.close()
    total = bound + (256 << 10)  # 64 KiB writes: the ones past the bound take the stack
    with client, server:
        for _ in range(total >> 16):
            client.sendall(b"b" * (1 << 16))
        client.shutdown(socket.SHUT_WR)
        time.sleep(0.3)  # everything is in, the FIN too unless it is held
        server.settimeout(10)
        poller = select.poll()
        poller.register(server.fileno(), select.POLLIN | select.POLLRDHUP)
        got = 0
        ask = total + 1  # more than all of it: the read of the redirected bytes is short
        while True:
            events = dict(poller.poll(10_000)).get(server.fileno(), 0)
            data = server.recv(ask)
            got += len(data)
            if not data:
                break
            if events & select.POLLRDHUP and got < total:
                return False, f"a short read came with RDHUP after {got} of {total} bytes: the FIN got in early"
    return got == total, f"{got} of {total} bytes; the read at the end of the redirected ones came without RDHUP"


def _check_half_close() -> tuple[bool, str]:
    """A blocking client half-closes and blocks in recv(); the server answers
    only after the ACK of the client's FIN has surely woken that recv()."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 7407))
    srv.listen(1)
    client = socket.create_connection(("127.0.0.1", 7407))
    client.settimeout(None)
    server, _ = srv.accept()
    srv.close()

    def answer() -> None:
        with server:
            _recv_exact(server, 4 << 20)
            time.sleep(0.3)
            server.sendall(b"done")

    t = threading.Thread(target=answer)
    t.start()
    with client:
        client.sendall(b"h" * (4 << 20))
        client.shutdown(socket.SHUT_WR)
        try:
            reply = _recv_exact(client, 4)
        except BlockingIOError:
            t.join()
            return False, "a blocking recv() after shutdown(SHUT_WR) failed with EAGAIN"
    t.join()
    return reply == b"done", "blocking recv() after shutdown(SHUT_WR) waited for the reply"


def _check_blocking_read_signal() -> tuple[bool, str]:
    """Informational: does a blocking recv() on an accelerated socket survive
    a signal (SA_RESTART handler), as on TCP? tcp_bpf_recvmsg() returns
    EAGAIN for any wake-up without data, a signal included."""
    client, server = _pair(7408)
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.siginterrupt(signal.SIGUSR1, False)
    with client, server:
        client.settimeout(None)
        timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGUSR1))
        timer.start()
        later = threading.Timer(0.6, lambda: server.sendall(b"x"))
        later.start()
        try:
            got = client.recv(1)
            ok, detail = got == b"x", "a signal during a blocking recv() is retried, as on TCP"
        except BlockingIOError:
            ok, detail = False, "a signal during a blocking recv() makes it fail with EAGAIN (tcp_bpf_recvmsg)"
        finally:
            timer.join()
            later.join()
            signal.signal(signal.SIGUSR1, previous)
    return ok, detail


def child_main(sockhash_fd: int, bound: int) -> int:
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
        "flow_control": lambda: _check_flow_control(bound),
        "half_close": _check_half_close,
        "boundary_read": lambda: _check_boundary_read(bound),
        "blocking_read_signal": _check_blocking_read_signal,
    }
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:
            results[name] = (False, f"{type(exc).__name__}: {exc}")
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1]), int(sys.argv[2])))
