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


def test_netns_flags_match_c() -> None:
    from meshaccel.agent import layout

    text = (bpf_source_dir() / "lib/keys.h").read_text()
    c_flags = {name: int(value) for name, value in re.findall(r"#define MA_(NETNS_F_[A-Z_]+)\s+(\d+)", text)}
    py_flags = {name: getattr(layout, name) for name in dir(layout) if name.startswith("NETNS_F_")}
    assert c_flags == py_flags
    assert len(c_flags) == 3
