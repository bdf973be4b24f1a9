"""Compile bpf/ with BCC, load it and pin it as a new generation."""

from __future__ import annotations

import ctypes as ct
import os
from pathlib import Path

from meshaccel_agent.datapath.pins import MAP_NAMES, RECV_LINK, Generation, PinRoot, u32
from meshaccel_agent.kernel import syscalls as sc
from meshaccel_agent.kernel.compile import (
    FIN_GATE_FN,
    RECV_FN,
    RECV_TRACEPOINT,
    SK_MSG_FN,
    SOCKOPS_FN,
    BuildOptions,
    schema_version,
)
from meshaccel_agent.kernel.layout import Meta


def install(pins: PinRoot, bpf_dir: Path, source: str, options: BuildOptions, build: bytes) -> Generation:
    """Compile @source, load the programs and pin everything as `current/`.

    The read tracepoint is attached here (it acts only on sockets of paired
    connections, so it is inert until something is paired). The sk_msg
    program is put on its sockhash by the caller before anything can be
    inserted; the sockops program and the FIN gate are attached to a cgroup
    only later.
    """
    from bcc import BPF, libbcc  # imported late: only installing needs BCC and LLVM

    bpf = BPF(text=source, cflags=options.cflags())
    own: list[int] = []  # fds BCC does not close for us
    try:
        start = libbcc.lib.bpf_function_start(bpf.module, RECV_FN.encode())
        size = libbcc.lib.bpf_function_size(bpf.module, RECV_FN.encode())
        recv = sc.load_tp_btf(ct.string_at(start, size), RECV_FN, RECV_TRACEPOINT)
        own.append(recv)
        progs = {
            "sockops": bpf.load_func(SOCKOPS_FN.encode(), BPF.SOCK_OPS).fd,
            "sk_msg": bpf.load_func(SK_MSG_FN.encode(), BPF.SK_MSG).fd,
            "recv": recv,
            "fin_gate": bpf.load_func(FIN_GATE_FN.encode(), BPF.CGROUP_SKB).fd,
        }
        # BCC 0.26's Python Table does not know sockhash (type 18): take
        # every map's fd from libbcc directly.
        maps = {name: int(libbcc.lib.bpf_table_fd(bpf.module, name.encode())) for name in MAP_NAMES}
        meta = Meta(schema_version=schema_version(bpf_dir), program_version=options.program_version)
        meta.build_id[:] = list(build)
        sc.RawMap(maps["ma_meta"], 4, ct.sizeof(Meta)).update(u32(0), bytes(meta))
        staging = pins.staging()
        for name, fd in {**progs, **maps}.items():
            sc.obj_pin(fd, str(staging / name))
        link = sc.attach_tp_btf(recv)
        own.append(link)
        sc.obj_pin(link, str(staging / RECV_LINK))
        return pins.promote(staging)
    finally:
        for fd in own:
            os.close(fd)
        bpf.cleanup()  # the pins hold everything now; free LLVM's memory
