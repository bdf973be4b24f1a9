"""Turn bpf/*.c into one BCC module.

BCC rewrites map method calls (map.lookup(), map.sock_hash_update(), ...)
only in the text it is handed, not in files reached through #include, so the
local includes are expanded here; #line markers keep compiler errors pointing
at the real file and line.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from meshaccel_api.v1alpha1 import MapSizes

PROGRAM_FILES = ("sockops.c", "sk_msg.c", "recv.c", "fin_gate.c")
SOCKOPS_FN = "meshaccel_sockops"
SK_MSG_FN = "meshaccel_sk_msg"
RECV_FN = "meshaccel_recv"
#: cgroup_skb ingress program on the same cgroup as sockops.
FIN_GATE_FN = "meshaccel_fin_gate"
#: The tracepoint RECV_FN runs on (tp_btf): after every recvmsg().
RECV_TRACEPOINT = "sock_recv_length"

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def bpf_source_dir() -> Path:
    """bpf/ of the checkout, or MESHACCEL_BPF_DIR (the images copy it)."""
    env = os.environ.get("MESHACCEL_BPF_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "bpf" / "sockops.c").is_file():
            return parent / "bpf"
    raise FileNotFoundError("bpf/ sources not found; set MESHACCEL_BPF_DIR")


#: -D name of each map size (bpf/lib/config.h requires every one of them).
MAP_SIZE_DEFINES = {
    "sockhash": "MA_SOCKHASH_ENTRIES",
    "pairs": "MA_PAIRS_ENTRIES",
    "netns": "MA_NETNS_ENTRIES",
    "endpoints": "MA_ENDPOINT_ENTRIES",
    "excludedPorts": "MA_EXCLUDED_PORT_ENTRIES",
}


@dataclass(frozen=True)
class BuildOptions:
    sizes: MapSizes = field(default_factory=MapSizes)
    #: Offsets of kernel members (kernel.btf.kernel_offsets()).
    kernel_offsets: tuple[tuple[str, int], ...] = ()
    #: Extra -D NAME=VALUE (e.g. MA_PROGRAM_VERSION for upgrade tests).
    extra_defines: tuple[tuple[str, int], ...] = ()

    def defines(self) -> dict[str, int]:
        sizes = {define: getattr(self.sizes, name) for name, define in MAP_SIZE_DEFINES.items()}
        return {**sizes, **dict(self.kernel_offsets), **dict(self.extra_defines)}

    def cflags(self) -> list[str]:
        return [f"-D{k}={v}" for k, v in sorted(self.defines().items())]

    @property
    def program_version(self) -> int:
        return int(dict(self.extra_defines).get("MA_PROGRAM_VERSION", 1))


def assemble_source(bpf_dir: Path, files: tuple[str, ...] = PROGRAM_FILES) -> str:
    """Concatenate the program files with their local includes expanded once."""
    seen: set[Path] = set()

    def expand(path: Path) -> str:
        path = path.resolve()
        if path in seen:
            return ""
        seen.add(path)
        rel = path.relative_to(bpf_dir.resolve())
        out = [f'#line 1 "{rel}"\n']
        for lineno, line in enumerate(path.read_text().splitlines(keepends=True), start=1):
            m = _INCLUDE.match(line)
            if m:
                out.append(expand(path.parent / m.group(1)))
                out.append(f'#line {lineno + 1} "{rel}"\n')
            else:
                out.append(line)
        return "".join(out)

    return "".join(expand(bpf_dir / f) for f in files)


def build_id(source: str, cflags: list[str]) -> bytes:
    """16 bytes naming this exact program build: same id, same programs and maps."""
    h = hashlib.sha256(source.encode())
    for flag in cflags:
        h.update(b"\0" + flag.encode())
    return h.digest()[:16]


def schema_version(bpf_dir: Path) -> int:
    m = re.search(r"#define MA_SCHEMA_VERSION (\d+)", (bpf_dir / "lib/config.h").read_text())
    if not m:
        raise ValueError("MA_SCHEMA_VERSION not found in bpf/lib/config.h")
    return int(m.group(1))
