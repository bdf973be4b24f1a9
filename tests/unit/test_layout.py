"""The Python mirrors of the C structures and counters match the sources."""

from __future__ import annotations

import ctypes as ct
import re
import subprocess
from pathlib import Path

from meshaccel_agent.kernel.compile import bpf_source_dir
from meshaccel_agent.kernel.layout import (
    Counter,
    Meta,
    NetnsInfo,
    OriginKey,
    Pair,
    PortKey,
    SockKey,
    SockState,
    ip_from_be32,
    ip_to_be32,
)

#: ctypes mirror -> (C struct, {ctypes field: C member} where the names differ)
MIRRORS = {
    SockKey: ("ma_sock_key", {}),
    OriginKey: ("ma_origin_key", {}),
    Pair: ("ma_pair", {}),
    SockState: ("ma_sock_state_val", {"self_key": "self"}),
    NetnsInfo: ("ma_netns_info", {}),
    PortKey: ("ma_port_key", {}),
    Meta: ("ma_meta", {}),
}


def test_struct_layouts_match_the_c_headers(tmp_path: Path) -> None:
    """Compile the real headers and compare every size and member offset."""
    checks = []
    for mirror, (c_name, renamed) in MIRRORS.items():
        checks.append(f'printf("{mirror.__name__} size %zu\\n", sizeof(struct {c_name}));')
        for field, *_ in mirror._fields_:
            member = renamed.get(field, field)
            checks.append(f'printf("{mirror.__name__} {field} %zu\\n", offsetof(struct {c_name}, {member}));')
    program = tmp_path / "layout.c"
    program.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\n"
        f'#include "{bpf_source_dir() / "lib/keys.h"}"\n'
        "int main(void) {\n" + "\n".join(checks) + "\nreturn 0;\n}\n"
    )
    subprocess.run(["gcc", "-o", str(tmp_path / "layout"), str(program)], check=True)
    c_side = subprocess.run([str(tmp_path / "layout")], check=True, capture_output=True, text=True).stdout.splitlines()
    py_side = []
    for mirror in MIRRORS:
        py_side.append(f"{mirror.__name__} size {ct.sizeof(mirror)}")
        py_side += [f"{mirror.__name__} {field} {getattr(mirror, field).offset}" for field, *_ in mirror._fields_]
    assert c_side == py_side


def test_counter_enum_matches_c() -> None:
    text = (bpf_source_dir() / "lib/counters.h").read_text()
    body = text[text.index("enum ma_counter {") : text.index("MA_C_MAX")]
    names = re.findall(r"MA_C_([A-Z_]+)", body)
    assert names == [c.name for c in Counter]


def test_ip_round_trip_is_network_order() -> None:
    assert ip_to_be32("10.0.0.1").to_bytes(4, "little") == bytes([10, 0, 0, 1])
    assert ip_from_be32(ip_to_be32("192.168.7.9")) == "192.168.7.9"


def test_netns_flags_match_c() -> None:
    from meshaccel_agent.kernel import layout

    text = (bpf_source_dir() / "lib/keys.h").read_text()
    c_flags = {name: int(value) for name, value in re.findall(r"#define MA_(NETNS_F_[A-Z_]+)\s+(\d+)", text)}
    py_flags = {name: getattr(layout, name) for name in dir(layout) if name.startswith("NETNS_F_")}
    assert c_flags == py_flags
    assert len(c_flags) == 3
