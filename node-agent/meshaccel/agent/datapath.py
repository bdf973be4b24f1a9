"""Load, adopt, attach, pin and query the eBPF datapath.

Pins live under <bpffs>/meshaccel/. The running generation is `current/`:
both programs, every map, and `ma_meta`, a marker holding the schema version
and a build id (hash of the exact source and -D flags).

On start the agent *adopts* `current/` when its marker and the type, key,
value and size of every pinned map match what this agent would build: it
reuses the programs and maps as they are, so established connections and
enrolment survive any restart (SIGTERM, SIGKILL, OOM, crash loop). Attaching
is idempotent (the kernel answers EEXIST for a program already attached).

Otherwise (an upgrade, or other map sizes) it *replaces* the generation: the
old sockops program is detached first (no new connection enrols there; while
neither is attached new connections simply stay on kernel TCP, which is
always safe, whereas attaching the new one first would let two generations
enrol the same socket), the directory is renamed `retired-<ns>/`, and a new
generation is compiled, pinned and attached. Established connections keep
their old sk_msg program and maps, which stay pinned until the old sockhash
is empty and are unpinned then (housekeeping). Nothing here ever deletes a
live socket's sockhash entry: that would purge bytes its reader has not
consumed yet.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import errno
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
    build_id,
    schema_version,
)
from meshaccel.agent.headers import HeaderChoice, choose_headers
from meshaccel.agent.layout import (
    COUNTER_SLOTS,
    NETNS_F_EXCLUSIONS,
    NETNS_F_NO_DIRECT,
    NETNS_F_NO_SIDECAR,
    Counter,
    MapSpec,
    Meta,
    NetnsInfo,
    PortKey,
    SockKey,
    expected_maps,
    ip_to_be32,
)

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
    "ma_meta",
)
SOCKHASH_KEY = len(bytes(SockKey()))


@dataclass(frozen=True)
class DesiredNetns:
    """What the datapath must know about one enrolled network namespace."""

    cookie: int
    ips: frozenset[str]
    excluded_ports: frozenset[int]
    sidecar: bool = True  # accelerate connections inside the namespace
    direct: bool = True  # accelerate connections to other enrolled namespaces

    @property
    def flags(self) -> int:
        return (
            (NETNS_F_EXCLUSIONS if self.excluded_ports else 0)
            | (0 if self.sidecar else NETNS_F_NO_SIDECAR)
            | (0 if self.direct else NETNS_F_NO_DIRECT)
        )


@dataclass(frozen=True)
class ReconcileResult:
    added: int
    removed: int
    refused: int = 0  # namespaces left out because an enrolment map is full


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


class Generation:
    """One pinned set of programs and maps, opened by path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fd(self, name: str) -> int:
        return sc.obj_get(str(self.path / name))

    def meta(self) -> Meta:
        fd = self.fd("ma_meta")
        try:
            raw = sc.RawMap(fd, 4, ct.sizeof(Meta)).lookup(_u32(0))
        finally:
            os.close(fd)
        return Meta.from_buffer_copy(raw or bytes(ct.sizeof(Meta)))

    def incompatibility(self, build: bytes, maps: dict[str, MapSpec]) -> str | None:
        """Why this generation cannot be adopted, or None if it can."""
        try:
            meta = self.meta()
            if bytes(meta.build_id) != build:
                return f"build {bytes(meta.build_id).hex()[:12]} != {build.hex()[:12]}"
            for name, want in maps.items():
                fd = self.fd(name)
                try:
                    have = MapSpec(*sc.map_info(fd))
                finally:
                    os.close(fd)
                if have != want:
                    return f"map {name} is {have}, expected {want}"
            for prog in PROG_PINS:
                os.close(self.fd(prog))
        except OSError as exc:
            return f"incomplete generation: {exc}"
        return None

    def sockhash_keys(self) -> list[SockKey]:
        fd = self.fd("ma_sockhash")
        try:
            m = sc.RawMap(fd, SOCKHASH_KEY, 4)
            return [SockKey.from_buffer_copy(k) for k in m.iter_keys()]
        finally:
            os.close(fd)

    def counters(self) -> list[int]:
        fd = self.fd("ma_counters")
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
        prog = self.fd("sockops")
        try:
            return detach_sockops(prog, cgroup)
        finally:
            os.close(prog)

    def attach_sockops(self, cgroup: str) -> None:
        prog = self.fd("sockops")
        try:
            attach_sockops(prog, cgroup)
        finally:
            os.close(prog)

    def unpin(self) -> None:
        shutil.rmtree(self.path)


class PinRoot:
    """<bpffs>/meshaccel and the generations in it."""

    def __init__(self, bpffs: str) -> None:
        self.path = Path(bpffs) / "meshaccel"

    def clear_staging(self) -> None:
        """Remove directories a crash left in the middle of pinning."""
        for stale in self.path.glob("staging-*"):
            shutil.rmtree(stale, ignore_errors=True)

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
        self.build_id = b""
        self.mode = ""
        self._maps: dict[str, sc.RawMap] = {}
        self._released_totals = [0] * COUNTER_SLOTS
        # Scrapes (HTTP threads) and housekeeping (main loop) both touch the
        # generations; one lock keeps a released generation counted once.
        self._lock = threading.Lock()
        self.attached = False

    # -- start-up -----------------------------------------------------

    def prepare(self) -> None:
        """Adopt the pinned generation if it is ours, else install a new one.

        Afterwards the generation is pinned as `current/` and its sk_msg
        program is on its sockhash; the sockops program is attached to the
        cgroup only by attach() (it may already be, after a restart).
        """
        t0 = time.monotonic()
        self.headers = choose_headers(self.cache_dir)
        source = assemble_source(bpf_source_dir())
        cflags = self.options.cflags()
        self.build_id = build_id(source, cflags)
        self.pins.path.mkdir(parents=True, exist_ok=True)
        self.pins.clear_staging()
        cur = self.pins.current()
        problem = cur.incompatibility(self.build_id, self.expected_maps()) if cur else "nothing pinned"
        if cur is not None and problem is None:
            self.mode = "adopted"
        else:
            if cur is not None:
                log.info("pinned datapath not reusable (%s): replacing it", problem)
                self.pins.retire_current(self.cgroup)
            self._install(source, cflags)
            self.mode = "installed"
        self._open_current()
        self.load_seconds = time.monotonic() - t0
        log.info("datapath %s in %.2fs (headers: %s)", self.mode, self.load_seconds, self.headers.source)

    def attach(self) -> None:
        """Attach sockops to the cgroup unless it already is (after a restart)."""
        cur = self.pins.current()
        if cur is None:
            raise RuntimeError("no datapath generation is pinned")
        cur.attach_sockops(self.cgroup)
        self.attached = True
        log.info("datapath attached to %s", self.cgroup)

    def detach(self) -> None:
        """Stop enrolling new connections; established ones keep running."""
        cur = self.pins.current()
        if cur is not None:
            cur.detach_sockops(self.cgroup)
        self.attached = False

    @contextlib.contextmanager
    def _current_fds(self, *names: str) -> Iterator[tuple[int, ...]]:
        gen = self.pins.current()
        if gen is None:
            raise RuntimeError("no datapath generation is pinned")
        fds = tuple(gen.fd(n) for n in names)
        try:
            yield fds
        finally:
            for fd in fds:
                os.close(fd)

    def _open_current(self) -> None:
        gen = self.pins.current()
        assert gen is not None
        self._maps = {
            "ma_netns": sc.RawMap(gen.fd("ma_netns"), 8, ct.sizeof(NetnsInfo)),
            "ma_endpoints": sc.RawMap(gen.fd("ma_endpoints"), 4, 8),
            "ma_excl_ports": sc.RawMap(gen.fd("ma_excl_ports"), ct.sizeof(PortKey), 1),
        }
        # sk_msg on the map before anything can be inserted, so every socket
        # gets the verdict program from its first message on. Re-attaching
        # the same program to the map is a no-op.
        with self._current_fds("sk_msg", "ma_sockhash") as (sk_msg, sockhash):
            sc.prog_attach(sk_msg, sockhash, sc.BPF_SK_MSG_VERDICT)

    def sockops_attached(self) -> bool:
        with self._current_fds("sockops") as (sockops,):
            prog_id, _ = sc.prog_id_and_name(sockops)
        return prog_id in our_sockops_on(self.cgroup)

    def netns_map(self) -> sc.RawMap:
        return self._maps["ma_netns"]

    def expected_maps(self) -> dict[str, MapSpec]:
        s = self.options.sizes
        return expected_maps(
            s.sockhash_entries, s.pairs_entries, s.netns_entries, s.endpoint_entries, s.excluded_port_entries
        )

    def _install(self, source: str, cflags: list[str]) -> None:
        """Compile and load a new generation and pin it as `current/`."""
        from bcc import BPF, libbcc  # imported late: only installing needs BCC and LLVM

        bpf = BPF(text=source, cflags=cflags)
        try:
            progs = {
                "sockops": bpf.load_func(SOCKOPS_FN.encode(), BPF.SOCK_OPS).fd,
                "sk_msg": bpf.load_func(SK_MSG_FN.encode(), BPF.SK_MSG).fd,
            }
            maps = {name: int(libbcc.lib.bpf_table_fd(bpf.module, name.encode())) for name in MAP_NAMES}
            meta = Meta(schema_version=schema_version(bpf_source_dir()), program_version=self._program_version())
            meta.build_id[:] = list(self.build_id)
            sc.RawMap(maps["ma_meta"], 4, ct.sizeof(Meta)).update(_u32(0), bytes(meta))
            # Pin into a private directory and rename it into place: a
            # crash never leaves a half-pinned `current/` behind.
            staging = self.pins.path / f"staging-{os.getpid()}"
            staging.mkdir()
            for name, fd in {**progs, **maps}.items():
                sc.obj_pin(fd, str(staging / name))
            staging.rename(self.pins.path / CURRENT)
        finally:
            bpf.cleanup()  # the pins hold everything now; free LLVM's memory

    def _program_version(self) -> int:
        return int(dict(self.options.extra_defines).get("MA_PROGRAM_VERSION", 1))

    # -- enrolment ----------------------------------------------------

    def reconcile(self, desired: Iterable[DesiredNetns]) -> ReconcileResult:
        """Make the enrolment maps equal to @desired; idempotent.

        Stale entries go first (addresses, then namespaces, then ports), which
        also frees room. Each namespace is then added ports first, namespace
        next, addresses last, so a namespace is never enrolled without its
        exclusions. When a map is full the namespace is left out (its
        connections stay on kernel TCP) and counted in `refused`. Sockets
        already enrolled are never touched: removing an endpoint only stops
        new connections from enrolling.
        """
        desired = list(desired)
        wanted: dict[str, dict[bytes, bytes]] = {"ma_netns": {}, "ma_excl_ports": {}, "ma_endpoints": {}}
        for d in desired:
            for name, entries in self._entries(d).items():
                wanted[name].update(entries)
        removed = 0
        for name in ("ma_endpoints", "ma_netns", "ma_excl_ports"):
            m = self._maps[name]
            for key in [k for k in m.iter_keys() if k not in wanted[name]]:
                removed += int(m.delete(key))
        added = refused = 0
        for d in desired:
            try:
                for name, entries in self._entries(d).items():
                    m = self._maps[name]
                    for key, value in entries.items():
                        if m.lookup(key) != value:
                            m.update(key, value)
                            added += 1
            except OSError as exc:
                if exc.errno not in (errno.E2BIG, errno.ENOMEM, errno.ENOSPC):
                    raise
                refused += 1
                for name in ("ma_endpoints", "ma_netns"):
                    for key in self._entries(d)[name]:
                        self._maps[name].delete(key)
        return ReconcileResult(added, removed, refused)

    @staticmethod
    def _entries(d: DesiredNetns) -> dict[str, dict[bytes, bytes]]:
        """Map entries of one namespace, in the order they must be added."""
        return {
            "ma_excl_ports": {bytes(PortKey(netns=d.cookie, port=p)): b"\x01" for p in sorted(d.excluded_ports)},
            "ma_netns": {_u64(d.cookie): bytes(NetnsInfo(flags=d.flags))},
            "ma_endpoints": {_u32(ip_to_be32(ip)): _u64(d.cookie) for ip in sorted(d.ips)},
        }

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


# The kernel keeps 15 characters of a program name.
SOCKOPS_KERNEL_NAME = SOCKOPS_FN[:15]


def our_sockops_on(cgroup: str) -> list[int]:
    """IDs of meshaccel sockops programs attached to @cgroup (any generation)."""
    cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ours = []
        for prog_id in sc.attached_prog_ids(cg, sc.BPF_CGROUP_SOCK_OPS):
            try:
                fd = sc.prog_fd_by_id(prog_id)
            except OSError:
                continue  # detached meanwhile
            try:
                if sc.prog_id_and_name(fd)[1] == SOCKOPS_KERNEL_NAME:
                    ours.append(prog_id)
            finally:
                os.close(fd)
        return ours
    finally:
        os.close(cg)


def attach_sockops(prog_fd: int, cgroup: str) -> None:
    """Attach a sockops program to @cgroup unless it already is (idempotent)."""
    cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # The kernel rejects a second attachment of the same program, so ask.
        prog_id, _ = sc.prog_id_and_name(prog_fd)
        if prog_id not in sc.attached_prog_ids(cg, sc.BPF_CGROUP_SOCK_OPS):
            # ALLOW_MULTI: other products' sockops programs on this cgroup
            # keep running and ours does not block theirs.
            sc.prog_attach(prog_fd, cg, sc.BPF_CGROUP_SOCK_OPS, sc.BPF_F_ALLOW_MULTI)
    finally:
        os.close(cg)


def detach_sockops(prog_fd: int, cgroup: str) -> bool:
    cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return sc.prog_detach(prog_fd, cg, sc.BPF_CGROUP_SOCK_OPS)
    finally:
        os.close(cg)


def _detach_by_id(cgroup: str, prog_id: int) -> bool:
    fd = sc.prog_fd_by_id(prog_id)
    try:
        return detach_sockops(fd, cgroup)
    finally:
        os.close(fd)


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
    from meshaccel.agent.selftest import remove_stale_cgroups

    remove_stale_cgroups(cgroup)
    pins = PinRoot(bpffs)
    orphans = our_sockops_on(cgroup)
    if not pins.path.exists() and not orphans:
        return CleanupReport(0, 0, 0, True)
    detached = 0
    # Whatever of ours is attached, pinned or not (pins removed by hand, a
    # generation from another bpffs mount): no new connection enrols.
    for prog_id in orphans:
        try:
            if _detach_by_id(cgroup, prog_id):
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
    pins.clear_staging()
    if live == 0:
        shutil.rmtree(pins.path, ignore_errors=True)
    return CleanupReport(detached, unpinned, live, False)
