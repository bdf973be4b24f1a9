"""Checked traffic: servers and clients that prove every byte arrived in order.

Run inside a pod: `python -m meshaccel_lab.traffic MODE ...`. Clients print
one JSON line and exit 0 only if everything they checked matched.

Streams are random bytes laid out so that any reordering, loss, duplication
or misdelivery changes the SHA-256 the receiver reports back.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import fcntl
import hashlib
import json
import os
import random
import socket
import struct
import sys
import termios
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

_BLOCK = os.urandom(1 << 20)
_REPLY = struct.Struct("!Q32s")  # bytes received, sha256


def pattern(total: int, chunk: int, seed: int) -> Iterator[memoryview]:
    """@total bytes in pieces of at most @chunk, each from a random offset."""
    rng = random.Random(seed)
    view = memoryview(_BLOCK)
    left = total
    while left > 0:
        n = min(chunk, left, len(_BLOCK))
        off = rng.randrange(0, len(_BLOCK) - n + 1)
        yield view[off : off + n]
        left -= n


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = s.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"EOF after {got} of {n} bytes")
        got += k
    return bytes(buf)


def fionread(s: socket.socket) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(s.fileno(), termios.FIONREAD, buf, True)
    return int(buf[0])


# -- servers -------------------------------------------------------------


def _serve(port: int, handler: object, host: str = "0.0.0.0") -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(4096)
    while True:
        conn, _ = srv.accept()
        conn.settimeout(IO_TIMEOUT)
        threading.Thread(target=handler, args=(conn,), daemon=True).start()  # type: ignore[arg-type]


def sink_handler(delay: float) -> object:
    """Read to EOF, answer with (length, sha256), close: checks half-close too."""

    def handle(conn: socket.socket) -> None:
        with conn:
            if delay:
                time.sleep(delay)
            h = hashlib.sha256()
            total = 0
            buf = bytearray(1 << 20)
            view = memoryview(buf)
            try:
                while True:
                    n = conn.recv_into(view)
                    if n == 0:
                        break
                    h.update(view[:n])
                    total += n
                conn.sendall(_REPLY.pack(total, h.digest()))
            except OSError:
                pass

    return handle


def echo_handler(conn: socket.socket) -> None:
    with conn:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        try:
            while True:
                n = conn.recv_into(view)
                if n == 0:
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(view[:n])
        except OSError:
            pass


# -- clients -------------------------------------------------------------


# Every socket gets a timeout, which makes CPython use non-blocking I/O plus
# poll(), like event-loop servers and proxies do. With plain blocking sockets,
# a recv() on a socket in a sockhash returns EAGAIN when the waiting thread is
# woken without data (e.g. by the ACK of its own FIN): tcp_bpf_recvmsg() does
# not loop on spurious wake-ups. See README "Known kernel limitations".
IO_TIMEOUT = 120.0


def _connect(host: str, port: int, bind: str | None = None) -> socket.socket:
    s = socket.socket()
    s.settimeout(IO_TIMEOUT)
    if bind:
        ip, _, p = bind.rpartition(":")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, int(p)))
    s.connect((host, port))
    return s


def stream_once(
    host: str, port: int, total: int, chunk: int, seed: int, hold: float = 0, bind: str | None = None
) -> dict[str, object]:
    """Send @total bytes to a sink, half-close, compare its (length, hash)."""
    h = hashlib.sha256()
    with _connect(host, port, bind) as s:
        if hold:
            time.sleep(hold)
        for piece in pattern(total, chunk, seed):
            s.sendall(piece)
            h.update(piece)
        s.shutdown(socket.SHUT_WR)
        n, digest = _REPLY.unpack(recv_exact(s, _REPLY.size))
    ok = n == total and digest == h.digest()
    return {"ok": ok, "sent": total, "received": n}


def _collect(s: socket.socket, n: int, into: list[bytes]) -> None:
    into.append(recv_exact(s, n))


def sizes(host: str, port: int, sizes: list[int]) -> dict[str, object]:
    """One connection to an echo server; each size echoed back byte-exact."""
    failures = []
    with _connect(host, port) as s:
        for i, size in enumerate(sizes):
            msg = b"".join(pattern(size, 1 << 20, i))
            received: list[bytes] = []
            reader = threading.Thread(target=_collect, args=(s, size, received))
            reader.start()  # read while writing: large echoes would deadlock otherwise
            s.sendall(msg)
            reader.join(60)
            if reader.is_alive() or not received or received[0] != msg:
                failures.append(size)
                break
    return {"ok": not failures, "failed_sizes": failures, "sizes": len(sizes)}


def many(host: str, port: int, count: int, concurrency: int, total: int, writes: int) -> dict[str, object]:
    """@count short connections, each writing right after connect()."""
    chunk = max(1, -(-total // writes))

    def one(i: int) -> bool:
        try:
            return bool(stream_once(host, port, total, chunk, i)["ok"])
        except OSError:
            return False

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(count)))
    bad = results.count(False)
    return {"ok": bad == 0, "connections": count, "failed": bad}


async def _echo_serve(port: int) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()

    srv = await asyncio.start_server(handle, "0.0.0.0", port, backlog=4096)
    await srv.serve_forever()


async def _echo_clients(host: str, port: int, conns: int, rounds: int, stall: float) -> dict[str, object]:
    worst = 0.0
    errors = 0

    async def one(i: int) -> None:
        nonlocal worst, errors
        rng = random.Random(i)
        r, w = await asyncio.open_connection(host, port)
        for _ in range(rounds):
            msg = os.urandom(rng.choice((1, 7, 100, 1500, 16384, 70000)))
            t0 = time.monotonic()
            w.write(msg)
            await w.drain()
            try:
                got = await asyncio.wait_for(r.readexactly(len(msg)), timeout=10)
            except (TimeoutError, asyncio.IncompleteReadError):
                errors += 1
                break
            worst = max(worst, time.monotonic() - t0)
            if got != msg:
                errors += 1
                break
        w.close()

    await asyncio.gather(*(one(i) for i in range(conns)))
    return {"ok": errors == 0 and worst < stall, "errors": errors, "worst_seconds": round(worst, 4)}


async def _disrupt(host: str, port: int, duration: float, long: int, rate: float, stall: float) -> dict[str, object]:
    """Cilium-style connection-disruption check, to run while a fault happens.

    @long connections exchange random messages that the echo server returns
    and that are compared byte for byte, for @duration seconds; meanwhile new
    connections open at @rate per second, each doing one checked exchange.
    Any error, mismatch, or gap of more than @stall seconds between two
    successful exchanges of a long connection fails the run.
    """
    failures: list[str] = []
    gaps: list[float] = []
    counts = {"long_rounds": 0, "new_connections": 0}
    deadline = time.monotonic() + duration

    async def exchange(r: asyncio.StreamReader, w: asyncio.StreamWriter, rng: random.Random) -> None:
        msg = os.urandom(rng.choice((1, 64, 1000, 4096, 65536, 200_000)))
        w.write(msg)
        await w.drain()
        got = await asyncio.wait_for(r.readexactly(len(msg)), timeout=10)
        if got != msg:
            raise ValueError(f"echo mismatch on a {len(msg)}-byte message")

    async def long_lived(i: int) -> None:
        rng = random.Random(i)
        try:
            r, w = await asyncio.open_connection(host, port)
            last = time.monotonic()
            while time.monotonic() < deadline:
                await exchange(r, w, rng)
                now = time.monotonic()
                gaps.append(now - last)
                last = now
                counts["long_rounds"] += 1
                await asyncio.sleep(0.005)
            w.close()
        except Exception as exc:  # every failure is a finding
            failures.append(f"long {i}: {type(exc).__name__}: {exc}")

    async def short_lived(i: int) -> None:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=10)
            await exchange(r, w, random.Random(10_000 + i))
            w.close()
            counts["new_connections"] += 1
        except Exception as exc:
            failures.append(f"new {i}: {type(exc).__name__}: {exc}")

    async def opener() -> None:
        tasks = []
        i = 0
        while time.monotonic() < deadline:
            tasks.append(asyncio.create_task(short_lived(i)))
            i += 1
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)

    await asyncio.gather(opener(), *(long_lived(i) for i in range(long)))
    worst = max(gaps, default=0.0)
    return {
        "ok": not failures and worst < stall and counts["long_rounds"] > 0,
        "failures": failures[:5],
        "failure_count": len(failures),
        "max_gap_seconds": round(worst, 3),
        **counts,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="meshaccel_lab.traffic")
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("sink", "echo", "aecho"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--host", default="0.0.0.0")
        s.add_argument("--first-read-delay", type=float, default=0.0)
    c = sub.add_parser("stream")
    c.add_argument("--bytes", type=int, required=True)
    c.add_argument("--chunk", type=int, default=1 << 20)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--hold", type=float, default=0.0)
    c.add_argument("--bind")
    z = sub.add_parser("sizes")
    z.add_argument("--sizes", required=True)
    m = sub.add_parser("many")
    m.add_argument("--count", type=int, required=True)
    m.add_argument("--concurrency", type=int, default=16)
    m.add_argument("--bytes", type=int, default=65536)
    m.add_argument("--writes", type=int, default=4)
    a = sub.add_parser("aclients")
    a.add_argument("--conns", type=int, default=50)
    a.add_argument("--rounds", type=int, default=50)
    a.add_argument("--stall", type=float, default=1.0)
    d = sub.add_parser("disrupt")
    d.add_argument("--duration", type=float, default=10.0)
    d.add_argument("--long", type=int, default=8)
    d.add_argument("--rate", type=float, default=20.0)
    d.add_argument("--stall", type=float, default=1.0)
    for s in (c, z, m, a, d):
        s.add_argument("--host", required=True)
        s.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)

    if args.mode == "sink":
        _serve(args.port, sink_handler(args.first_read_delay), args.host)
    elif args.mode == "echo":
        _serve(args.port, echo_handler, args.host)
    elif args.mode == "aecho":
        asyncio.run(_echo_serve(args.port))
    result: dict[str, object]
    if args.mode == "stream":
        result = stream_once(args.host, args.port, args.bytes, args.chunk, args.seed, args.hold, args.bind)
    elif args.mode == "sizes":
        result = sizes(args.host, args.port, [int(x) for x in args.sizes.split(",")])
    elif args.mode == "many":
        result = many(args.host, args.port, args.count, args.concurrency, args.bytes, args.writes)
    elif args.mode == "disrupt":
        result = asyncio.run(_disrupt(args.host, args.port, args.duration, args.long, args.rate, args.stall))
    else:
        result = asyncio.run(_echo_clients(args.host, args.port, args.conns, args.rounds, args.stall))
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
