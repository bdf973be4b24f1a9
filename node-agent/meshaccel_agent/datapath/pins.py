"""Pinned generations under <bpffs>/meshaccel/.

A generation is one set of programs and maps pinned together, with
`ma_meta`, a marker holding the schema version and a build id (hash of the
exact source and -D flags). The running one is `current/`; an upgrade renames
it `retired-<ns>/`, where it stays, carrying its established connections,
until its sockhash is empty. Pinning happens in `staging-<pid>/` and is
renamed into place, so a crash never leaves a half-pinned `current/`.
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from meshaccel_agent.datapath.attach import attach_sockops, detach_sockops, is_attached
from meshaccel_agent.kernel import syscalls as sc
from meshaccel_agent.kernel.compile import FIN_GATE_FN, RECV_FN, SK_MSG_FN, SOCKOPS_FN
from meshaccel_agent.kernel.layout import Config, Counter, Flow, FlowKey, MapSpec, Meta, SockKey

log = logging.getLogger(__name__)
T = TypeVar("T")

CURRENT = "current"
RETIRED_PREFIX = "retired-"
STAGING_PREFIX = "staging-"
#: pin name -> function name in bpf/
PROGRAMS = {"sockops": SOCKOPS_FN, "sk_msg": SK_MSG_FN, "recv": RECV_FN, "fin_gate": FIN_GATE_FN}
#: The recv program's tracepoint attachment: a pinned link stays attached
#: after the agent exits, and goes when the generation is unpinned.
RECV_LINK = "recv_link"
#: The FIN gate's cgroup attachment, pinned the same way: it guards the
#: generation's connections for as long as any is left, also once retired
#: or draining for uninstall (bpf/fin_gate.c).
GATE_LINK = "gate_link"
MAP_NAMES = (
    "ma_sockhash",
    "ma_pairs",
    "ma_sock_state",
    "ma_netns",
    "ma_endpoints",
    "ma_excl_ports",
    "ma_counters",
    "ma_meta",
    "ma_flows",
    "ma_config",
)
SOCKHASH_KEY_SIZE = ct.sizeof(SockKey)


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


class Generation:
    """One pinned set of programs and maps, opened by path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fd(self, name: str) -> int:
        """A new fd for a pinned object; the caller closes it."""
        return sc.obj_get(str(self.path / name))

    def meta(self) -> Meta:
        fd = self.fd("ma_meta")
        try:
            raw = sc.RawMap(fd, 4, ct.sizeof(Meta)).lookup(u32(0))
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
            for pin in (*PROGRAMS, RECV_LINK):
                os.close(self.fd(pin))
        except OSError as exc:
            return f"incomplete generation: {exc}"
        return None

    def set_flow_bound(self, bound: int) -> None:
        """The flow-control bound (bytes) every connection of this generation uses from now on."""
        fd = self.fd("ma_config")
        try:
            sc.RawMap(fd, 4, ct.sizeof(Config)).update(u32(0), bytes(Config(flow_bound=bound)))
        finally:
            os.close(fd)

    def set_draining(self) -> None:
        """Uninstall: from now on every message of this generation's sockets
        takes the TCP stack (bpf/lib/flow.h, ma_flow_admit)."""
        fd = self.fd("ma_config")
        try:
            m = sc.RawMap(fd, 4, ct.sizeof(Config))
            raw = m.lookup(u32(0))
            config = Config.from_buffer_copy(raw) if raw else Config()
            config.draining = 1
            m.update(u32(0), bytes(config))
        finally:
            os.close(fd)

    def remove_sockets(self, keys: list[SockKey]) -> int:
        """Delete @keys from the sockhash: each socket reverts to plain TCP.
        Only for sockets with nothing redirected left unread (see drain())."""
        fd = self.fd("ma_sockhash")
        try:
            m = sc.RawMap(fd, SOCKHASH_KEY_SIZE, 4)
            return sum(1 for k in keys if m.delete(bytes(k)))
        finally:
            os.close(fd)

    def flows(self) -> list[tuple[FlowKey, Flow]]:
        fd = self.fd("ma_flows")
        try:
            m = sc.RawMap(fd, ct.sizeof(FlowKey), ct.sizeof(Flow))
            out = []
            for k in m.iter_keys():
                v = m.lookup(k)
                if v is not None:
                    out.append((FlowKey.from_buffer_copy(k), Flow.from_buffer_copy(v)))
            return out
        finally:
            os.close(fd)

    def sockhash_keys(self) -> list[SockKey]:
        fd = self.fd("ma_sockhash")
        try:
            m = sc.RawMap(fd, SOCKHASH_KEY_SIZE, 4)
            return [SockKey.from_buffer_copy(k) for k in m.iter_keys()]
        finally:
            os.close(fd)

    def counters(self) -> dict[Counter, int]:
        """The per-CPU counters of this generation, summed over CPUs."""
        fd = self.fd("ma_counters")
        ncpu = sc.possible_cpus()
        try:
            m = sc.RawMap(fd, 4, 8 * ncpu)
            totals = {}
            for c in Counter:
                raw = m.lookup(u32(c)) or bytes(8 * ncpu)
                totals[c] = sum(int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 8))
            return totals
        finally:
            os.close(fd)

    def _with_sockops(self, fn: Callable[[int, str], T], cgroup: str) -> T:
        prog = self.fd("sockops")
        try:
            return fn(prog, cgroup)
        finally:
            os.close(prog)

    def attach_sockops(self, cgroup: str) -> None:
        self._with_sockops(attach_sockops, cgroup)

    def detach_sockops(self, cgroup: str) -> bool:
        return self._with_sockops(detach_sockops, cgroup)

    def sockops_attached(self, cgroup: str) -> bool:
        return self._with_sockops(is_attached, cgroup)

    def detach_recv(self) -> None:
        """Take the read tracepoint off (benchmarks of "nothing attached");
        attach_recv() puts it back."""
        # A tracepoint link cannot be detached (EOPNOTSUPP); it goes with its
        # last reference, which is the pin.
        (self.path / RECV_LINK).unlink(missing_ok=True)

    def _pin_link(self, pin: str, prog_name: str, attach: Callable[[int], int]) -> None:
        """Attach the program @prog_name with @attach (program fd -> link fd)
        and pin the link as @pin, unless it is pinned already. The pin is
        the link's last reference: removing it detaches."""
        if (self.path / pin).exists():
            return
        prog = self.fd(prog_name)
        try:
            link = attach(prog)
            try:
                sc.obj_pin(link, str(self.path / pin))
            finally:
                os.close(link)
        finally:
            os.close(prog)

    def attach_recv(self) -> None:
        self._pin_link(RECV_LINK, "recv", sc.attach_tp_btf)

    def attach_gate(self, cgroup: str) -> None:
        """Attach the FIN gate to @cgroup unless this generation's already is."""
        cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._pin_link(GATE_LINK, "fin_gate", lambda prog: sc.link_create(prog, cg, sc.BPF_CGROUP_INET_INGRESS))
        finally:
            os.close(cg)

    def detach_gate(self) -> None:
        """Benchmarks of "nothing attached" only: a connection that spills
        without the gate can end early for its reader (bpf/fin_gate.c)."""
        (self.path / GATE_LINK).unlink(missing_ok=True)

    def unpin(self) -> None:
        shutil.rmtree(self.path)


class PinRoot:
    """<bpffs>/meshaccel and the generations in it."""

    def __init__(self, bpffs: str) -> None:
        self.path = Path(bpffs) / "meshaccel"

    def clear_staging(self) -> None:
        """Remove directories a crash left in the middle of pinning."""
        for stale in self.path.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)

    def staging(self) -> Path:
        path = self.path / f"{STAGING_PREFIX}{os.getpid()}"
        path.mkdir()
        return path

    def promote(self, staging: Path) -> Generation:
        """Make a fully pinned staging directory the current generation."""
        staging.rename(self.path / CURRENT)
        return Generation(self.path / CURRENT)

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
        """Stop the current generation enrolling new connections and move it
        aside; its established connections keep running on it."""
        cur = self.current()
        if cur is None:
            return
        try:
            cur.detach_sockops(cgroup)
        except OSError as exc:
            log.warning("could not detach the previous sockops program: %s", exc)
        cur.path.rename(self.path / f"{RETIRED_PREFIX}{time.time_ns()}")
        log.info("previous datapath retired; its connections keep running on it")

    def release_drained(self) -> list[dict[Counter, int]]:
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
