"""The running generation: compiled or adopted, pinned, attached, observed.

On start the agent *adopts* `current/` when its marker and the type, key,
value and size of every pinned map match what this agent would build: it
reuses the programs and maps as they are, so established connections and
enrolment survive any restart (SIGTERM, SIGKILL, OOM, crash loop).

Otherwise (an upgrade, or other map sizes) it *replaces* the generation: the
old sockops program is detached first (while neither is attached, new
connections simply stay on kernel TCP, which is always safe, whereas
attaching the new one first would let two generations enrol the same
socket), the old directory is retired, and a new generation is compiled,
pinned and attached. Established connections keep their old sk_msg program
and maps, which stay pinned until the old sockhash is empty (housekeeping).
Nothing here ever deletes a live socket's sockhash entry: that would purge
bytes its reader has not consumed yet.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator

from meshaccel_agent.datapath.enrolment import DesiredNetns, EnrolmentMaps, ReconcileResult
from meshaccel_agent.datapath.loader import install
from meshaccel_agent.datapath.pins import Generation, PinRoot
from meshaccel_agent.kernel import syscalls as sc
from meshaccel_agent.kernel.btf import kernel_offsets
from meshaccel_agent.kernel.compile import BuildOptions, assemble_source, bpf_source_dir, build_id
from meshaccel_agent.kernel.headers import HeaderChoice, choose_headers
from meshaccel_agent.kernel.layout import Counter, MapSpec, SockKey, expected_maps

log = logging.getLogger(__name__)


class Datapath:
    def __init__(self, bpffs: str, cgroup: str, cache_dir: str, options: BuildOptions, flow_bound: int) -> None:
        self.pins = PinRoot(bpffs)
        self.cgroup = cgroup
        self.cache_dir = cache_dir
        self.options = options
        self.flow_bound = flow_bound
        self.headers: HeaderChoice | None = None
        self.load_seconds = 0.0
        self.build_id = b""
        self.mode = ""  # "adopted" or "installed"
        self.attached = False
        self._enrolment: EnrolmentMaps | None = None
        self._released: dict[Counter, int] = dict.fromkeys(Counter, 0)
        # Scrapes (HTTP threads) and housekeeping (main loop) both touch the
        # generations; one lock keeps a released generation counted once.
        self._lock = threading.Lock()

    # -- start-up -----------------------------------------------------

    def prepare(self) -> None:
        """Adopt the pinned generation if it is ours, else install a new one.

        Afterwards the generation is pinned as `current/` and its sk_msg
        program is on its sockhash; the sockops program is attached to the
        cgroup only by attach() (it may already be, after a restart).
        """
        t0 = time.monotonic()
        self.headers = choose_headers(self.cache_dir)
        self.options = dataclasses.replace(self.options, kernel_offsets=kernel_offsets())
        bpf_dir = bpf_source_dir()
        source = assemble_source(bpf_dir)
        self.build_id = build_id(source, self.options.cflags())
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
            cur = install(self.pins, bpf_dir, source, self.options, self.build_id)
            self.mode = "installed"
        self._arm_sk_msg(cur)
        cur.set_flow_bound(self.flow_bound)
        self._enrolment = EnrolmentMaps(cur)
        self.load_seconds = time.monotonic() - t0
        log.info("datapath %s in %.2fs (headers: %s)", self.mode, self.load_seconds, self.headers.source)

    @staticmethod
    def _arm_sk_msg(gen: Generation) -> None:
        # sk_msg on the map before anything can be inserted, so every socket
        # gets the verdict program from its first message on. Re-attaching
        # the same program to the map is a no-op.
        prog, sockhash = gen.fd("sk_msg"), gen.fd("ma_sockhash")
        try:
            sc.prog_attach(prog, sockhash, sc.BPF_SK_MSG_VERDICT)
        finally:
            os.close(prog)
            os.close(sockhash)

    def current(self) -> Generation:
        gen = self.pins.current()
        if gen is None:
            raise RuntimeError("no datapath generation is pinned")
        return gen

    def attach(self) -> None:
        """Attach sockops to the cgroup unless it already is (after a restart).
        The FIN gate goes first: it must guard every connection sockops pairs."""
        cur = self.current()
        cur.attach_gate(self.cgroup)
        cur.attach_sockops(self.cgroup)
        self.attached = True
        log.info("datapath attached to %s", self.cgroup)

    def detach(self) -> None:
        """Stop enrolling new connections; established ones keep running."""
        cur = self.pins.current()
        if cur is not None:
            cur.detach_sockops(self.cgroup)
        self.attached = False

    def expected_maps(self) -> dict[str, MapSpec]:
        return expected_maps(self.options.sizes)

    # -- enrolment ----------------------------------------------------

    def reconcile(self, desired: Iterable[DesiredNetns]) -> ReconcileResult:
        if self._enrolment is None:
            raise RuntimeError("reconcile before prepare()")
        return self._enrolment.reconcile(desired)

    # -- observation --------------------------------------------------

    def counters(self) -> dict[Counter, int]:
        """Counters summed over CPUs and over every generation this process
        has seen, including retired ones it already released."""
        with self._lock:
            totals = dict(self._released)
            for gen in self.pins.generations():
                try:
                    for c, v in gen.counters().items():
                        totals[c] += v
                except OSError:
                    continue
        return totals

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
                for c, v in final.items():
                    self._released[c] += v
        if released:
            log.info("released %d drained datapath generation(s)", len(released))
