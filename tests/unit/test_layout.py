"""The Python mirrors of the C structures and counters match the sources."""

from __future__ import annotations

import re

from meshaccel.agent.compile import bpf_source_dir
from meshaccel.agent.layout import Counter, NetnsInfo, PortKey, SockKey, ip_from_be32, ip_to_be32


def test_struct_sizes() -> None:
    assert len(bytes(SockKey())) == 24
    assert len(bytes(PortKey())) == 16
    assert len(bytes(NetnsInfo())) == 8


def test_counter_enum_matches_c() -> None:
    text = (bpf_source_dir() / "lib/counters.h").read_text()
    body = text[text.index("enum ma_counter {") : text.index("MA_C_MAX")]
    names = re.findall(r"MA_C_([A-Z_]+)", body)
    assert names == [c.name for c in Counter]


def test_ip_round_trip_is_network_order() -> None:
    assert ip_to_be32("10.0.0.1").to_bytes(4, "little") == bytes([10, 0, 0, 1])
    assert ip_from_be32(ip_to_be32("192.168.7.9")) == "192.168.7.9"
