"""Slow readers and fast writers, checked byte for byte.

Run inside a pod: `python -m meshaccel_lab.slow MODE ...`. The server reads
slowly, in the ways real programs read; the clients write as fast as the
socket lets them. Every stream ends with the server's (length, sha256), so
loss, reordering or misdelivery fail the run. Clients print one JSON line and
exit 0 only if everything they checked matched.

  slowsink  reads each connection at --rate bytes/s (0: as fast as it can),
            in random sizes from 1 B to --max-read, sleeping between reads;
            --style blocking | epoll (non-blocking reads until EAGAIN after
            each EPOLLIN) | peek (MSG_PEEK each chunk first, then read it and
            compare) | rdhup (an event loop's reader, as HAProxy's: after
            --delay seconds, polls for EPOLLIN|EPOLLRDHUP and reads 1 MiB at a
            time, and takes a read shorter than asked while RDHUP was
            reported for the end of the stream, as is valid on TCP);
            --fast-after N reads at full speed after N bytes;
            --notify-fast also sends one byte (b"!") once it has read N
  flood     writes --bytes through a non-blocking socket driven by epoll:
            EAGAIN is TCP's way of saying "wait", EPOLLOUT says "go on";
            counts them, and any other error fails the run; --parallel N
            runs N connections at once; --pause-at N stops after N bytes
            until the sink's --notify-fast byte says it has read them all
  halfclose --count times: a blocking socket (no timeout) sends --bytes,
            shuts its sending side, and blocks in recv() for the reply, as
            simple clients do; EAGAIN or any error there fails the run
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import random
import select
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass

from meshaccel_lab.traffic import pattern, recv_exact

_REPLY = struct.Struct("!Q32s")  # bytes received, sha256 (as traffic.sink)


# -- the server ----------------------------------------------------------


class Pacer:
    """Sleeps so that reading stays at @rate bytes/s (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()

    def wait(self, total: int) -> None:
        if self.rate > 0:
            ahead = total / self.rate - (time.monotonic() - self.start)
            if ahead > 0:
                time.sleep(min(ahead, 0.5))


def _read_chunk(conn: socket.socket, style: str, n: int, ep: select.epoll | None) -> bytes:
    if style == "epoll":
        assert ep is not None
        while True:
            try:
                return conn.recv(n)
            except BlockingIOError:
                ep.poll(5)
    if style == "peek":
        peeked = conn.recv(n, socket.MSG_PEEK)
        got = conn.recv(len(peeked)) if peeked else b""
        if got != peeked[: len(got)]:
            raise AssertionError(f"MSG_PEEK showed {len(peeked)} bytes that the next read did not return")
        return got
    return conn.recv(n)


_NOTICE = b"!"
_SO_RCVBUFFORCE = 33  # include/uapi/asm-generic/socket.h


def read_until_rdhup_says_done(conn: socket.socket, delay: float) -> tuple[int, bytes]:
    """HAProxy's raw_sock_to_buf(): a short read with RDHUP set is the end.
    On TCP it is: tcp_recvmsg() returns short only once the receive queue is
    empty, and nothing follows a FIN."""
    time.sleep(delay)
    h = hashlib.sha256()
    total = 0
    p = select.poll()
    p.register(conn.fileno(), select.POLLIN | select.POLLRDHUP)
    while True:
        events = dict(p.poll(300_000)).get(conn.fileno(), 0)
        data = conn.recv(1 << 20)
        h.update(data)
        total += len(data)
        if not data or (len(data) < 1 << 20 and events & select.POLLRDHUP):
            return total, h.digest()


@dataclass(frozen=True)
class ReadStyle:
    rate: float
    max_read: int
    style: str
    fast_after: int
    notify: bool
    delay: float


def handle(conn: socket.socket, how: ReadStyle, seed: int) -> None:
    if how.style == "rdhup":
        with conn:
            conn.sendall(_REPLY.pack(*read_until_rdhup_says_done(conn, how.delay)))
        return
    rate, max_read, style, fast_after, notify = how.rate, how.max_read, how.style, how.fast_after, how.notify
    rng = random.Random(seed)
    h = hashlib.sha256()
    total = 0
    pacer = Pacer(rate)
    ep: select.epoll | None = None
    with conn:
        if style == "epoll":
            conn.setblocking(False)
            ep = select.epoll()
            ep.register(conn.fileno(), select.EPOLLIN)
        else:
            conn.settimeout(300)
        try:
            while True:
                size = rng.choice((1, 7, 100, 1500, 4096, 65536, max_read, rng.randint(1, max_read)))
                data = _read_chunk(conn, style, min(size, max_read), ep)
                if not data:
                    break
                h.update(data)
                total += len(data)
                if not fast_after or total < fast_after:
                    pacer.wait(total)
                elif notify:
                    notify = False
                    conn.setblocking(True)
                    conn.sendall(_NOTICE)
                    conn.setblocking(style != "epoll")
            conn.setblocking(True)
            conn.sendall(_REPLY.pack(total, h.digest()))
        except OSError:
            pass
        finally:
            if ep is not None:
                ep.close()


def serve(port: int, how: ReadStyle) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if how.style == "rdhup":
        # A receive window as wide as autotuning grows one (SO_RCVBUFFORCE,
        # root only): the spilled bytes and the FIN arrive while the reader
        # is still behind on the redirected ones.
        srv.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 16 << 20)
    srv.bind(("0.0.0.0", port))
    srv.listen(1024)
    seed = 0
    while True:
        conn, _ = srv.accept()
        seed += 1
        threading.Thread(target=handle, args=(conn, how, seed), daemon=True).start()


# -- the clients ---------------------------------------------------------


def flood(
    host: str, port: int, total: int, chunk: int, seed: int, timeout: float, pause_at: int = 0
) -> dict[str, object]:
    """Non-blocking writes, epoll for EPOLLOUT; the verdict of the reader.
    With @pause_at, the writer stops there until the reader says it has read
    every byte so far (a lull, as between a real program's bursts)."""
    s = socket.create_connection((host, port), timeout=10)
    s.setblocking(False)
    ep = select.epoll()
    ep.register(s.fileno(), select.EPOLLOUT)
    h = hashlib.sha256()
    counts = {"eagain": 0, "epollout": 0, "writes": 0}
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    accepted, t_half = 0, 0.0
    try:
        for piece in pattern(total, chunk, seed):
            view = piece
            while view:
                if time.monotonic() > deadline:
                    raise TimeoutError("the writer made no progress before the deadline")
                try:
                    n = s.send(view)
                    counts["writes"] += 1
                except BlockingIOError:
                    counts["eagain"] += 1
                    if ep.poll(10):
                        counts["epollout"] += 1
                    continue
                h.update(view[:n])
                view = view[n:]
                accepted += n
                if not t_half and accepted >= total // 2:
                    t_half = time.monotonic()
            if pause_at and accepted == pause_at:
                s.setblocking(True)
                s.settimeout(timeout)
                if recv_exact(s, len(_NOTICE)) != _NOTICE:
                    raise AssertionError("the reader's notice was not what it sends")
                s.setblocking(False)
        write_seconds = time.monotonic() - t0
        s.setblocking(True)
        s.settimeout(timeout)
        s.shutdown(socket.SHUT_WR)
        n, digest = _REPLY.unpack(recv_exact(s, _REPLY.size))
    except OSError as exc:
        errors.append(f"{type(exc).__name__}: {errno.errorcode.get(exc.errno or 0, exc.errno)} {exc}")
        n, digest, write_seconds = -1, b"", time.monotonic() - t0
    finally:
        ep.close()
        s.close()
    ok = not errors and n == total and digest == h.digest()
    seconds = round(write_seconds, 3)
    # The writer's rate over the second half of the stream (after a reader
    # that speeds up has done so).
    late = (total - total // 2) * 8 / 1e9 / max(1e-6, t0 + write_seconds - t_half) if t_half else 0.0
    return {
        "ok": ok,
        "sent": total,
        "received": n,
        "errors": errors,
        "write_seconds": seconds,
        "late_gbit_per_s": round(late, 3),
        **counts,
    }


def floods(host: str, port: int, total: int, chunk: int, parallel: int, timeout: float) -> dict[str, object]:
    """@parallel floods at once, one thread (and connection) each."""
    results: list[dict[str, object]] = [{} for _ in range(parallel)]

    def one(i: int) -> None:
        results[i] = flood(host, port, total, chunk, i + 1, timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 60)
    bad = [r for r in results if not r.get("ok")]
    return {
        "ok": not bad,
        "connections": parallel,
        "failed": len(bad),
        "failures": [r.get("errors") or r for r in bad[:5]],
        "eagain": sum(int(str(r.get("eagain", 0))) for r in results),
    }


def halfclose(host: str, port: int, total: int, count: int) -> dict[str, object]:
    """Blocking sockets with no timeout: what a simple client does."""
    failures: list[str] = []
    for i in range(count):
        s = socket.create_connection((host, port))
        s.settimeout(None)  # blocking: no poll() under the hood
        try:
            h = hashlib.sha256()
            for piece in pattern(total, 1 << 20, i):
                s.sendall(piece)
                h.update(piece)
            s.shutdown(socket.SHUT_WR)
            n, digest = _REPLY.unpack(recv_exact(s, _REPLY.size))
            if n != total or digest != h.digest():
                failures.append(f"#{i}: reply {n} bytes, digest {'ok' if digest == h.digest() else 'differs'}")
        except OSError as exc:
            failures.append(f"#{i}: {type(exc).__name__}: {errno.errorcode.get(exc.errno or 0, exc.errno)}")
        finally:
            s.close()
    return {"ok": not failures, "connections": count, "failures": failures[:10], "failed": len(failures)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="meshaccel_lab.slow", description=__doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    srv = sub.add_parser("slowsink")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--rate", type=float, default=0.0)
    srv.add_argument("--max-read", type=int, default=1 << 20)
    srv.add_argument("--style", choices=("blocking", "epoll", "peek", "rdhup"), default="blocking")
    srv.add_argument("--delay", type=float, default=1.0, help="rdhup: seconds before the first read")
    srv.add_argument("--fast-after", type=int, default=0)
    srv.add_argument("--notify-fast", action="store_true")
    f = sub.add_parser("flood")
    f.add_argument("--bytes", type=int, required=True)
    f.add_argument("--chunk", type=int, default=1 << 20)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--timeout", type=float, default=120.0)
    f.add_argument("--parallel", type=int, default=1)
    f.add_argument("--pause-at", type=int, default=0)
    hc = sub.add_parser("halfclose")
    hc.add_argument("--bytes", type=int, required=True)
    hc.add_argument("--count", type=int, default=1)
    for c in (f, hc):
        c.add_argument("--host", required=True)
        c.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    if args.mode == "slowsink":
        serve(args.port, ReadStyle(args.rate, args.max_read, args.style, args.fast_after, args.notify_fast, args.delay))
        return 0
    if args.mode == "flood" and args.parallel > 1:
        result = floods(args.host, args.port, args.bytes, args.chunk, args.parallel, args.timeout)
    elif args.mode == "flood":
        result = flood(args.host, args.port, args.bytes, args.chunk, args.seed, args.timeout, args.pause_at)
    else:
        result = halfclose(args.host, args.port, args.bytes, args.count)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
