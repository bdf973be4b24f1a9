"""How much memory TCP sockets hold, as the kernel reports it.

Two views, sampled in the background during a test:

* the host's TCP memory (/proc/net/sockstat `mem`, pages): every byte charged
  to a TCP socket, the bytes redirected into a psock and not read yet
  included (bpf_tcp_ingress() charges them to the receiver with
  sk_mem_charge()). Its growth over the run is the measure of a test;
* `ss -tm` per socket: r = sk_rmem_alloc, the TCP receive queue and the
  bytes waiting in the psock's ingress queue (bpf_tcp_ingress() adds them);
  rb = the receive buffer TCP autotuned; t/w = the send side. TCP keeps r
  near rb; whatever redirected bytes add shows as r beyond rb.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from meshaccel_lab.topology import Pod, sh

# `ss -tmnH state established`: Recv-Q Send-Q local peer, then skmem.
_SOCKET = re.compile(
    r"^\d+\s+\d+\s+(?P<local>\S+):(?P<lport>\d+)\s+(?P<peer>\S+):(?P<pport>\d+).*?"
    r"skmem:\(r(?P<r>\d+),rb(?P<rb>\d+),t(?P<t>\d+),tb\d+,f\d+,w(?P<w>\d+)",
    re.S | re.M,
)


@dataclass(frozen=True)
class SockMem:
    local_port: int
    peer_port: int
    rmem: int  # r: receive side (TCP receive queue and psock ingress queue)
    rcvbuf: int  # rb: its receive buffer, as TCP autotuned it
    wmem: int  # max(t, w): send side (allocated / queued)


def sockets(pod: Pod) -> list[SockMem]:
    out = pod.sh("ss", "-tmnH", "state", "established", check=False)
    # ss prints a socket's skmem on a continuation line: join records first.
    records = re.split(r"\n(?=\S)", out)
    found = []
    for rec in records:
        m = _SOCKET.search(" ".join(rec.split("\n")))
        if m:
            wmem = max(int(m["t"]), int(m["w"]))
            found.append(SockMem(int(m["lport"]), int(m["pport"]), int(m["r"]), int(m["rb"]), wmem))
    return found


def host_tcp_pages() -> int:
    """TCP memory of the whole host, in pages (/proc/net/sockstat `mem`)."""
    text = sh("cat", "/proc/net/sockstat")
    m = re.search(r"^TCP:.*\bmem (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


PAGE = 4096


@dataclass
class Peak:
    host_tcp_bytes: int = 0  # growth of the host's TCP memory over the start of the run
    total: int = 0  # r + w over every established TCP socket of the pods
    socket_rmem: int = 0  # the largest receive side of a single socket
    over_rcvbuf: int = 0  # the largest r - rb of a single socket
    samples: int = 0
    series: list[tuple[float, int]] = field(default_factory=list)  # (t, host_tcp_bytes)


class Sampler:
    """Samples every established TCP socket of @pods each @interval s until
    stopped, and keeps the peaks."""

    def __init__(self, pods: list[Pod], interval: float = 0.05) -> None:
        self.pods = pods
        self.interval = interval
        self.peak = Peak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sockmem", daemon=True)
        self._t0 = time.monotonic()
        self._base_pages = 0
        self.error = ""

    def __enter__(self) -> Sampler:
        self._base_pages = host_tcp_pages()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.error:
            raise RuntimeError(f"the memory sampler failed: {self.error}")

    def _run(self) -> None:
        try:
            self._sample_until_stopped()
        except Exception as exc:  # a dead sampler must not pass for "no memory used"
            self.error = f"{type(exc).__name__}: {exc}"

    def _sample_until_stopped(self) -> None:
        while not self._stop.is_set():
            socks = [s for pod in self.pods for s in sockets(pod)]
            total = sum(s.rmem + s.wmem for s in socks)
            p = self.peak
            p.total = max(p.total, total)
            p.socket_rmem = max([p.socket_rmem, *(s.rmem for s in socks)])
            p.over_rcvbuf = max([p.over_rcvbuf, *(s.rmem - s.rcvbuf for s in socks)])
            grown = (host_tcp_pages() - self._base_pages) * PAGE
            p.host_tcp_bytes = max(p.host_tcp_bytes, grown)
            p.samples += 1
            p.series.append((round(time.monotonic() - self._t0, 3), grown))
            self._stop.wait(self.interval)
