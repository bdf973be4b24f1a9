"""ctypes mirrors of bpf/lib/keys.h and bpf/lib/counters.h.

The agent reads and writes maps as raw bytes; these structures must match the
C layout byte for byte. tests/unit/test_layout.py checks sizes and the
counter list against the C sources.
"""

from __future__ import annotations

import ctypes as ct
import enum
import ipaddress
import socket
from dataclasses import dataclass

from meshaccel_api.v1alpha1 import MapSizes


class SockKey(ct.Structure):
    _fields_ = [
        ("netns", ct.c_uint64),
        ("local_ip4", ct.c_uint32),  # network byte order
        ("remote_ip4", ct.c_uint32),
        ("local_port", ct.c_uint32),  # host byte order
        ("remote_port", ct.c_uint32),
    ]

    def describe(self) -> tuple[int, str, int, str, int]:
        return (
            self.netns,
            ip_from_be32(self.local_ip4),
            self.local_port,
            ip_from_be32(self.remote_ip4),
            self.remote_port,
        )


NETNS_F_EXCLUSIONS = 1  # MA_NETNS_F_EXCLUSIONS in keys.h
NETNS_F_NO_SIDECAR = 2  # MA_NETNS_F_NO_SIDECAR
NETNS_F_NO_DIRECT = 4  # MA_NETNS_F_NO_DIRECT


class NetnsInfo(ct.Structure):
    _fields_ = [("flags", ct.c_uint32), ("pad", ct.c_uint32)]


class PortKey(ct.Structure):
    _fields_ = [("netns", ct.c_uint64), ("port", ct.c_uint32), ("pad", ct.c_uint32)]


class Counter(enum.IntEnum):
    """Indices of ma_counters (enum ma_counter in bpf/lib/counters.h)."""

    SOCKETS_ENROLLED = 0
    PAIRS = 1
    REDIR_MSGS = 2
    REDIR_BYTES = 3
    PASS_NATIVE = 4
    PASS_PEER_GONE = 5
    PASS_NO_STATE = 6
    REFUSED_EXISTS = 7
    REFUSED_FULL = 8
    REFUSED_PAIRS_FULL = 9
    PAIR_MISMATCH = 10
    PAIR_RACE_NATIVE = 11
    PASS_NATIVE_BYTES = 12
    PASS_SHUTDOWN = 13
    FLOW_SPILLS = 14
    FLOW_RESUMES = 15
    PASS_FLOW_CONTROL = 16
    PASS_FLOW_CONTROL_BYTES = 17
    PASS_PEER_CLOSED = 18
    HALF_CLOSE_UNENROLLED = 19
    HALF_CLOSE_KEPT = 20
    REFUSED_FLOWS_FULL = 21
    PASS_PEER_GONE_BYTES = 22
    PASS_NO_STATE_BYTES = 23
    PASS_SHUTDOWN_BYTES = 24
    PASS_PEER_CLOSED_BYTES = 25
    PASS_DRAINING = 26
    PASS_DRAINING_BYTES = 27
    STACK_READ_BYTES = 28
    FIN_HELD = 29


COUNTER_SLOTS = len(Counter)

#: Why a message of an enrolled socket went through the kernel stack:
#: reason -> (messages, bytes).
PASS_REASONS = {
    "native": (Counter.PASS_NATIVE, Counter.PASS_NATIVE_BYTES),  # the pair settled on the stack
    "peer_gone": (Counter.PASS_PEER_GONE, Counter.PASS_PEER_GONE_BYTES),  # the peer socket closed
    "no_state": (Counter.PASS_NO_STATE, Counter.PASS_NO_STATE_BYTES),  # socket in the map without state
    "shutdown": (Counter.PASS_SHUTDOWN, Counter.PASS_SHUTDOWN_BYTES),  # write after shutdown(SHUT_WR): EPIPE
    "flow_control": (Counter.PASS_FLOW_CONTROL, Counter.PASS_FLOW_CONTROL_BYTES),  # the reader owes the bound
    "peer_closed": (Counter.PASS_PEER_CLOSED, Counter.PASS_PEER_CLOSED_BYTES),  # the reader half-closed and left
    "uninstall": (Counter.PASS_DRAINING, Counter.PASS_DRAINING_BYTES),  # the datapath is being removed
}
PASS_COUNTERS = tuple(msgs for msgs, _ in PASS_REASONS.values())
PASS_BYTE_COUNTERS = tuple(nbytes for _, nbytes in PASS_REASONS.values())


def ip_to_be32(ip: str) -> int:
    """IPv4 text -> the u32 the kernel stores (network order read as host int)."""
    return int.from_bytes(socket.inet_aton(str(ipaddress.IPv4Address(ip))), "little")


def ip_from_be32(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "little"))


class OriginKey(ct.Structure):
    _fields_ = [("netns", ct.c_uint64), ("ip4", ct.c_uint32), ("port", ct.c_uint32)]


class Pair(ct.Structure):
    _fields_ = [
        ("state", ct.c_uint64),
        ("client", SockKey),
        ("server", SockKey),
        ("client_next_seq", ct.c_uint32),
        ("server_next_seq", ct.c_uint32),
    ]


class FlowKey(ct.Structure):
    _fields_ = [("origin", OriginKey), ("client_next_seq", ct.c_uint32), ("server_next_seq", ct.c_uint32)]


class SockState(ct.Structure):
    _fields_ = [
        ("state", ct.c_uint64),
        ("origin", OriginKey),
        ("self_key", SockKey),
        ("peer", SockKey),
        ("flow", FlowKey),
        ("send_dir", ct.c_uint32),
        ("pad", ct.c_uint32),
        ("last_copied_seq", ct.c_uint64),
    ]


class DirMode(enum.IntEnum):
    """enum ma_dir_mode in bpf/lib/keys.h."""

    REDIRECT = 1
    STACK = 2
    CLOSED = 3


class FlowDir(ct.Structure):
    _fields_ = [
        ("mode", ct.c_uint64),
        ("redirected", ct.c_uint64),
        ("read_redirected", ct.c_uint64),
        ("read_seq", ct.c_uint32),
        ("pad", ct.c_uint32),
    ]


class Flow(ct.Structure):
    _fields_ = [("dir", FlowDir * 2), ("open", ct.c_uint64)]


class Config(ct.Structure):
    _fields_ = [("flow_bound", ct.c_uint64), ("draining", ct.c_uint64)]


class Meta(ct.Structure):
    _fields_ = [("schema_version", ct.c_uint32), ("program_version", ct.c_uint32), ("build_id", ct.c_uint8 * 16)]


# enum bpf_map_type values (include/uapi/linux/bpf.h)
MAP_HASH, MAP_ARRAY, MAP_PERCPU_ARRAY, MAP_LRU_HASH, MAP_SOCKHASH, MAP_SK_STORAGE = 1, 2, 6, 9, 18, 24


@dataclass(frozen=True)
class MapSpec:
    """What a pinned map must look like to be reused."""

    type: int
    key_size: int
    value_size: int
    max_entries: int


def expected_maps(sizes: MapSizes) -> dict[str, MapSpec]:
    size = ct.sizeof
    return {
        "ma_sockhash": MapSpec(MAP_SOCKHASH, size(SockKey), 4, sizes.sockhash),
        "ma_pairs": MapSpec(MAP_LRU_HASH, size(OriginKey), size(Pair), sizes.pairs),
        "ma_sock_state": MapSpec(MAP_SK_STORAGE, 4, size(SockState), 0),
        "ma_netns": MapSpec(MAP_HASH, 8, size(NetnsInfo), sizes.netns),
        "ma_endpoints": MapSpec(MAP_HASH, 4, 8, sizes.endpoints),
        "ma_excl_ports": MapSpec(MAP_HASH, size(PortKey), 1, sizes.excludedPorts),
        "ma_counters": MapSpec(MAP_PERCPU_ARRAY, 4, 8, COUNTER_SLOTS),
        "ma_meta": MapSpec(MAP_ARRAY, 4, size(Meta), 1),
        "ma_flows": MapSpec(MAP_HASH, size(FlowKey), size(Flow), sizes.sockhash),
        "ma_config": MapSpec(MAP_ARRAY, 4, size(Config), 1),
    }
