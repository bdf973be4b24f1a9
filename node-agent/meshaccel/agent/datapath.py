"""Load, attach, pin and query the eBPF datapath.

Pins live under <bpffs>/meshaccel/. The running generation is `current/`.
When an agent starts while a previous generation is pinned, it detaches the
old sockops program (no new connection enrols there any more), renames the
directory to `retired-<ns>/` and installs a fresh generation. Established
connections keep their old sk_msg program and maps, which stay pinned until
the old sockhash is empty; only then are they unpinned (housekeeping).
Nothing here ever deletes a live socket's sockhash entry: that would purge
bytes the receiver has not read yet.

Detach before attach: while neither program is attached new connections
simply stay on the kernel stack, which is always safe. Attaching the new one
first would let both generations enrol the same socket.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from meshaccel.agent import syscalls as sc
from meshaccel.agent.compile import (
    SK_MSG_FN,
    SOCKOPS_FN,
    BuildOptions,
    assemble_source,
    bpf_source_dir,
)
from meshaccel.agent.headers import HeaderChoice, choose_headers
from meshaccel.agent.layout import COUNTER_SLOTS, Counter, NetnsInfo, PortKey, SockKey, ip_to_be32

log = logging.getLogger(__name__)

CURRENT = "current"
RETIRED_PREFIX = "retired-"
PROG_PINS = {"sockops": SOCKOPS_FN, "sk_msg": SK_MSG_FN}
MAP_NAMES = (
    "ma_sockhash",
    "ma_pairs",
    "ma_sock_state",
    "ma_netns",
    "ma_endpoints",
    "ma_excl_ports",
    "ma_counters",
)
SOCKHASH_KEY = len(bytes(SockKey()))


@dataclass(frozen=True)
class DesiredNetns:
    """What the datapath must know about one enrolled network namespace."""

    cookie: int
    ips: frozenset[str]
    excluded_ports: frozenset[int]


@dataclass(frozen=True)
class ReconcileResult:
    added: int
    removed: int


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


class Generation:
    """One pinned set of programs and maps, opened by path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _fd(self, name: str) -> int:
        return sc.obj_get(str(self.path / name))

    def sockhash_keys(self) -> list[SockKey]:
        fd = self._fd("ma_sockhash")
        try:
            m = sc.RawMap(fd, SOCKHASH_KEY, 4)
            return [SockKey.from_buffer_copy(k) for k in m.iter_keys()]
        finally:
            os.close(fd)

    def counters(self) -> list[int]:
        fd = self._fd("ma_counters")
        ncpu = sc.possible_cpus()
        try:
            m = sc.RawMap(fd, 4, 8 * ncpu)
            totals = []
            for idx in range(COUNTER_SLOTS):
                raw = m.lookup(_u32(idx)) or bytes(8 * ncpu)
                totals.append(sum(int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 8)))
            return totals
        finally:
            os.close(fd)

    def detach_sockops(self, cgroup: str) -> bool:
        prog = self._fd("sockops")
        cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return sc.prog_detach(prog, cg, sc.BPF_CGROUP_SOCK_OPS)
        finally:
            os.close(cg)
            os.close(prog)

    def unpin(self) -> None:
        shutil.rmtree(self.path)


class PinRoot:
    """<bpffs>/meshaccel and the generations in it."""

    def __init__(self, bpffs: str) -> None:
        self.path = Path(bpffs) / "meshaccel"

    def current(self) -> Generation | None:
        p = self.path / CURRENT
        return Generation(p) if p.is_dir() else None

    def retired(self) -> list[Generation]:
        if not self.path.is_dir():
            return []
        return [Generation(p) for p in sorted(self.path.glob(RETIRED_PREFIX + "*"))]

    def generations(self) -> list[Generation]:
        cur = self.current()
        return ([cur] if cur else []) + self.retired()

    def retire_current(self, cgroup: str) -> None:
        cur = self.current()
        if cur is None:
            return
        try:
            cur.detach_sockops(cgroup)
        except OSError as exc:
            log.warning("could not detach the previous sockops program: %s", exc)
        cur.path.rename(self.path / f"{RETIRED_PREFIX}{time.time_ns()}")
        log.info("previous datapath retired; its connections keep running on it")

    def release_drained(self) -> list[list[int]]:
        """Unpin retired generations that no longer carry any connection.

        Returns the final counters of each released generation, so callers
        can keep their totals monotonic.
        """
        released = []
        for gen in self.retired():
            try:
                if gen.sockhash_keys():
                    continue
                released.append(gen.counters())
            except OSError:
                pass  # incomplete generation (crash during pinning): nothing to protect
            gen.unpin()
        return released


class Datapath:
    """The running generation: compiled, loaded, pinned and attached."""

    def __init__(self, bpffs: str, cgroup: str, cache_dir: str, options: BuildOptions | None = None) -> None:
        self.pins = PinRoot(bpffs)
        self.cgroup = cgroup
        self.cache_dir = cache_dir
        self.options = options or BuildOptions()
        self.headers: HeaderChoice | None = None
        self.load_seconds = 0.0
        self._bpf = None
        self._maps: dict[str, sc.RawMap] = {}
        self._released_totals = [0] * COUNTER_SLOTS
        # Scrapes (HTTP threads) and housekeeping (main loop) both touch the
        # generations; one lock keeps a released generation counted once.
        self._lock = threading.Lock()
        self.attached = False

    # -- start-up -----------------------------------------------------

    def start(self) -> None:
        """Compile, load, pin and attach; retire any previous generation."""
        from bcc import BPF  # imported late: only the datapath needs BCC

        t0 = time.monotonic()
        self.headers = choose_headers(self.cache_dir)
        src_dir = bpf_source_dir()
        self._bpf = bpf = BPF(text=assemble_source(src_dir), cflags=self.options.cflags())
        sockops = bpf.load_func(SOCKOPS_FN.encode(), BPF.SOCK_OPS)
        sk_msg = bpf.load_func(SK_MSG_FN.encode(), BPF.SK_MSG)
        fds = {name: self._table_fd(name) for name in MAP_NAMES}
        self._maps = {
            "ma_netns": sc.RawMap(fds["ma_netns"], 8, len(bytes(NetnsInfo()))),
            "ma_endpoints": sc.RawMap(fds["ma_endpoints"], 4, 8),
            "ma_excl_ports": sc.RawMap(fds["ma_excl_ports"], len(bytes(PortKey())), 1),
        }

        self.pins.path.mkdir(parents=True, exist_ok=True)
        self.pins.retire_current(self.cgroup)
        staging = self.pins.path / f"staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for pin, fn in (("sockops", sockops), ("sk_msg", sk_msg)):
            sc.obj_pin(fn.fd, str(staging / pin))
        for name, fd in fds.items():
            sc.obj_pin(fd, str(staging / name))
        staging.rename(self.pins.path / CURRENT)

        # sk_msg on the map first, so every socket the sockops program
        # inserts gets the verdict program from its first message on.
        sc.prog_attach(sk_msg.fd, fds["ma_sockhash"], sc.BPF_SK_MSG_VERDICT)
        cg = os.open(self.cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # ALLOW_MULTI: other products' sockops programs on this cgroup
            # keep running, and ours does not block theirs.
            sc.prog_attach(sockops.fd, cg, sc.BPF_CGROUP_SOCK_OPS, sc.BPF_F_ALLOW_MULTI)
        finally:
            os.close(cg)
        self.attached = True
        self.load_seconds = time.monotonic() - t0
        log.info("datapath attached to %s in %.2fs (headers: %s)", self.cgroup, self.load_seconds, self.headers.source)

    def _table_fd(self, name: str) -> int:
        from bcc import libbcc

        assert self._bpf is not None
        fd = int(libbcc.lib.bpf_table_fd(self._bpf.module, name.encode()))
        if fd < 0:
            raise RuntimeError(f"map {name} missing from the compiled module")
        return fd

    # -- enrolment ----------------------------------------------------

    def reconcile(self, desired: Iterable[DesiredNetns]) -> ReconcileResult:
        """Make the enrolment maps equal to @desired; idempotent.

        Additions go namespace first, then its addresses; removals the other
        way round. Sockets already enrolled are never touched: removing an
        endpoint only stops new connections from enrolling.
        """
        want_ns: dict[bytes, bytes] = {}
        want_ep: dict[bytes, bytes] = {}
        want_ports: dict[bytes, bytes] = {}
        for d in desired:
            want_ns[_u64(d.cookie)] = bytes(NetnsInfo())
            for ip in d.ips:
                want_ep[_u32(ip_to_be32(ip))] = _u64(d.cookie)
            for port in d.excluded_ports:
                want_ports[bytes(PortKey(netns=d.cookie, port=port))] = b"\x01"
        added = removed = 0
        order = (
            ("ma_netns", want_ns),
            ("ma_excl_ports", want_ports),
            ("ma_endpoints", want_ep),
        )
        for name, want in order:
            m = self._maps[name]
            for key, value in want.items():
                if m.lookup(key) != value:
                    m.update(key, value)
                    added += 1
        for name, want in reversed(order):
            m = self._maps[name]
            for key in [k for k in m.iter_keys() if k not in want]:
                if m.delete(key):
                    removed += 1
        return ReconcileResult(added, removed)

    # -- observation --------------------------------------------------

    def counters(self) -> dict[Counter, int]:
        """Counters summed over CPUs and over every generation this process
        has seen, including retired ones it already released."""
        with self._lock:
            totals = list(self._released_totals)
            for gen in self.pins.generations():
                try:
                    for i, v in enumerate(gen.counters()):
                        totals[i] += v
                except OSError:
                    continue
        return {c: totals[c] for c in Counter}

    def enrolled_sockets(self) -> Iterator[SockKey]:
        for gen in self.pins.generations():
            try:
                yield from gen.sockhash_keys()
            except OSError:
                continue

    def housekeeping(self) -> None:
        with self._lock:
            released = self.pins.release_drained()
            for final in released:
                self._released_totals = [a + b for a, b in zip(self._released_totals, final, strict=True)]
        if released:
            log.info("released %d drained datapath generation(s)", len(released))


@dataclass(frozen=True)
class CleanupReport:
    detached: int
    unpinned: int
    live_sockets: int
    nothing_installed: bool


def cleanup(bpffs: str, cgroup: str, wait_seconds: float = 0.0) -> CleanupReport:
    """Uninstall: detach every generation, unpin each once it is drained.

    Established accelerated connections keep working: their sockets stay in
    their sockhash until they close. Pins of a generation that still carries
    connections are kept (after waiting up to @wait_seconds); a later cleanup
    finishes the job.
    """
    pins = PinRoot(bpffs)
    gens = pins.generations()
    if not pins.path.exists():
        return CleanupReport(0, 0, 0, True)
    detached = 0
    for gen in gens:
        try:
            if gen.detach_sockops(cgroup):
                detached += 1
        except OSError:
            pass
    deadline = time.monotonic() + wait_seconds
    live = 0
    unpinned = 0
    while True:
        live = 0
        for gen in list(pins.generations()):
            try:
                n = len(gen.sockhash_keys())
            except OSError:
                n = 0
            if n == 0:
                gen.unpin()
                unpinned += 1
            live += n
        if live == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for stale in pins.path.glob("staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if live == 0:
        shutil.rmtree(pins.path, ignore_errors=True)
    return CleanupReport(detached, unpinned, live, False)
