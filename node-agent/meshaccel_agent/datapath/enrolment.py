"""The enrolment maps: which network namespaces, addresses and ports the
sockops program may pair. Written only here, read only by sockops.c."""

from __future__ import annotations

import ctypes as ct
import errno
from collections.abc import Iterable
from dataclasses import dataclass

from meshaccel_agent.datapath.pins import Generation, u32, u64
from meshaccel_agent.kernel import syscalls as sc
from meshaccel_agent.kernel.layout import (
    NETNS_F_EXCLUSIONS,
    NETNS_F_NO_DIRECT,
    NETNS_F_NO_SIDECAR,
    NetnsInfo,
    PortKey,
    ip_to_be32,
)

#: Removal order: addresses first (no new pairing towards the namespace),
#: then the namespace, then its ports.
REMOVE_ORDER = ("ma_endpoints", "ma_netns", "ma_excl_ports")


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

    def entries(self) -> dict[str, dict[bytes, bytes]]:
        """Map entries of this namespace, in the order they must be added:
        ports first, so a namespace is never enrolled without its exclusions."""
        return {
            "ma_excl_ports": {bytes(PortKey(netns=self.cookie, port=p)): b"\x01" for p in sorted(self.excluded_ports)},
            "ma_netns": {u64(self.cookie): bytes(NetnsInfo(flags=self.flags))},
            "ma_endpoints": {u32(ip_to_be32(ip)): u64(self.cookie) for ip in sorted(self.ips)},
        }


@dataclass(frozen=True)
class ReconcileResult:
    added: int
    removed: int
    refused: int = 0  # namespaces left out because an enrolment map is full


class EnrolmentMaps:
    """The three enrolment maps of one generation, held open."""

    def __init__(self, gen: Generation) -> None:
        self.maps = {
            "ma_netns": sc.RawMap(gen.fd("ma_netns"), 8, ct.sizeof(NetnsInfo)),
            "ma_endpoints": sc.RawMap(gen.fd("ma_endpoints"), 4, 8),
            "ma_excl_ports": sc.RawMap(gen.fd("ma_excl_ports"), ct.sizeof(PortKey), 1),
        }

    def close(self) -> None:
        for m in self.maps.values():
            m.close()

    def reconcile(self, desired: Iterable[DesiredNetns]) -> ReconcileResult:
        """Make the maps equal to @desired; idempotent.

        Stale entries go first, which also frees room. When a map is full the
        namespace is left out (its connections stay on kernel TCP) and
        counted in `refused`. Sockets already enrolled are never touched:
        removing an endpoint only stops new connections from enrolling.
        """
        desired = list(desired)
        wanted: dict[str, dict[bytes, bytes]] = {name: {} for name in self.maps}
        for d in desired:
            for name, entries in d.entries().items():
                wanted[name].update(entries)
        removed = 0
        for name in REMOVE_ORDER:
            m = self.maps[name]
            for key in [k for k in m.iter_keys() if k not in wanted[name]]:
                removed += int(m.delete(key))
        added = refused = 0
        for d in desired:
            try:
                for name, entries in d.entries().items():
                    m = self.maps[name]
                    for key, value in entries.items():
                        if m.lookup(key) != value:
                            m.update(key, value)
                            added += 1
            except OSError as exc:
                if exc.errno not in (errno.E2BIG, errno.ENOMEM, errno.ENOSPC):
                    raise
                refused += 1
                for name in ("ma_endpoints", "ma_netns"):
                    for key in d.entries()[name]:
                        self.maps[name].delete(key)
        return ReconcileResult(added, removed, refused)
