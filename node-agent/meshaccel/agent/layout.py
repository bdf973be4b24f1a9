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


COUNTER_SLOTS = len(Counter)


def ip_to_be32(ip: str) -> int:
    """IPv4 text -> the u32 the kernel stores (network order read as host int)."""
    return int.from_bytes(socket.inet_aton(str(ipaddress.IPv4Address(ip))), "little")


def ip_from_be32(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "little"))
