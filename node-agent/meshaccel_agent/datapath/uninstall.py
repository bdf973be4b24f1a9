"""Uninstall: detach, drain every accelerated connection onto TCP, unpin.

Established connections keep working, on plain TCP. A socket cannot simply
be deleted from its sockhash: that frees its psock, and with it any bytes
redirected to it that its reader has not read yet. So:

1. sockops is detached: no new connection is paired.
2. The generation is set draining (ma_config): from the next message on,
   every sender takes the TCP stack instead of redirecting.
3. A socket leaves the sockhash once its reader has read everything that was
   redirected to it (the flow's `read_redirected` has reached `redirected`).
   Its later reads take the TCP receive queue, where the senders' bytes are
   now, in order: the redirected ones were all read first.
4. A generation whose sockhash is empty is unpinned; its programs and maps
   go with the last reference.

A reader that never reads keeps its socket (and the generation's pins) until
it does, or closes: the report says how many, and a later cleanup continues.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass

from meshaccel_agent.datapath.attach import detach_sockops_by_id, our_sockops_on
from meshaccel_agent.datapath.pins import Generation, PinRoot
from meshaccel_agent.kernel.cgroups import remove_stale_selftest_cgroups
from meshaccel_agent.kernel.layout import Flow, FlowKey, SockKey

FROM_CLIENT, FROM_SERVER = 0, 1


@dataclass(frozen=True)
class CleanupReport:
    detached: int
    unpinned: int
    live_sockets: int
    nothing_installed: bool
    moved_to_tcp: int = 0


def _loopback(ip4: int) -> bool:
    return ip4 & 0xFF == 127  # network byte order read as a little-endian int


def drained(keys: list[SockKey], flows: list[tuple[FlowKey, Flow]]) -> list[SockKey]:
    """The sockets nothing redirected to is still waiting for.

    A flow names its client by endpoint (origin: netns, ip, port). The client
    socket is the one with that local endpoint; its incoming direction is
    the server's. The server socket sees the client endpoint as its remote
    (same namespace for loopback). A socket matching several flows (a port
    reused while the old flow lingers) waits for all of them."""
    by_client: dict[tuple[int, int, int], list[Flow]] = defaultdict(list)
    by_remote: dict[tuple[int, int], list[tuple[int, Flow]]] = defaultdict(list)
    for key, flow in flows:
        o = key.origin
        by_client[(o.netns, o.ip4, o.port)].append(flow)
        by_remote[(o.ip4, o.port)].append((o.netns, flow))
    out = []
    for k in keys:
        incoming = [f.dir[FROM_SERVER] for f in by_client.get((k.netns, k.local_ip4, k.local_port), [])]
        if not incoming:
            incoming = [
                f.dir[FROM_CLIENT]
                for netns, f in by_remote.get((k.remote_ip4, k.remote_port), [])
                if netns == k.netns or not _loopback(k.remote_ip4)
            ]
        # No flow: nothing is ever redirected to it (a pair settled native,
        # or its flow ended with the connection).
        if all(d.redirected == d.read_redirected for d in incoming):
            out.append(k)
    return out


def drain(gen: Generation) -> tuple[int, int]:
    """One pass: move drained sockets to TCP; returns (moved, left)."""
    keys = gen.sockhash_keys()
    ready = drained(keys, gen.flows())
    moved = gen.remove_sockets(ready) if ready else 0
    return moved, len(keys) - moved


def cleanup(bpffs: str, cgroup: str, wait_seconds: float = 0.0) -> CleanupReport:
    """Detach everything of ours from @cgroup, move accelerated connections
    to TCP and unpin, waiting up to @wait_seconds for readers to catch up."""
    remove_stale_selftest_cgroups(cgroup)
    pins = PinRoot(bpffs)
    orphans = our_sockops_on(cgroup)
    if not pins.path.exists() and not orphans:
        return CleanupReport(0, 0, 0, True)
    detached = 0
    # Whatever of ours is attached, pinned or not (pins removed by hand, a
    # generation from another bpffs mount): no new connection enrols.
    for prog_id in orphans:
        with contextlib.suppress(OSError):  # detached meanwhile
            detached += int(detach_sockops_by_id(cgroup, prog_id))
    generations = list(pins.generations())
    for gen in generations:
        with contextlib.suppress(OSError):  # an incomplete generation has no config
            gen.set_draining()
    deadline = time.monotonic() + wait_seconds
    unpinned = moved = 0
    while True:
        live = 0
        for gen in list(generations):
            try:
                n_moved, left = drain(gen)
            except OSError:
                n_moved, left = 0, 0  # incomplete: nothing to drain
            moved += n_moved
            if left == 0:
                gen.unpin()
                generations.remove(gen)
                unpinned += 1
            live += left
        if live == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    pins.clear_staging()
    if live == 0:
        shutil.rmtree(pins.path, ignore_errors=True)
    return CleanupReport(detached, unpinned, live, False, moved)
