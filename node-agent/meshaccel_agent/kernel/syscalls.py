"""Thin typed wrappers over libbcc's bpf syscall helpers and setns(2).

BCC's Python API covers loading; pinning, cgroup attach flags, sockhash
iteration and adopting pinned maps need the raw calls. We bind our own
ctypes handle so setting argtypes never changes BCC's.
"""

from __future__ import annotations

import ctypes as ct
import ctypes.util
import errno
import os
from collections.abc import Iterator

# enum bpf_prog_type, bpf_attach_type and flags, from include/uapi/linux/bpf.h
BPF_PROG_TYPE_TRACING = 26
BPF_CGROUP_INET_INGRESS = 0
BPF_CGROUP_SOCK_OPS = 3
BPF_SK_MSG_VERDICT = 7
BPF_TRACE_RAW_TP = 23
BPF_F_ALLOW_MULTI = 1 << 1
BPF_STATS_RUN_TIME = 0
BPF_ANY = 0
BPF_NOEXIST = 1

CLONE_NEWNET = 0x40000000
SO_NETNS_COOKIE = 71


def _bind() -> ct.CDLL:
    from bcc import libbcc  # Debian python3-bpfcc

    lib = ct.CDLL(libbcc.lib._name, use_errno=True)
    sigs: dict[str, tuple[list[type], type]] = {
        "bpf_obj_pin": ([ct.c_int, ct.c_char_p], ct.c_int),
        "bpf_obj_get": ([ct.c_char_p], ct.c_int),
        "bpf_prog_attach": ([ct.c_int, ct.c_int, ct.c_int, ct.c_uint], ct.c_int),
        "bpf_prog_detach2": ([ct.c_int, ct.c_int, ct.c_int], ct.c_int),
        "bpf_get_next_key": ([ct.c_int, ct.c_void_p, ct.c_void_p], ct.c_int),
        "bpf_lookup_elem": ([ct.c_int, ct.c_void_p, ct.c_void_p], ct.c_int),
        "bpf_update_elem": ([ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_ulonglong], ct.c_int),
        "bpf_delete_elem": ([ct.c_int, ct.c_void_p], ct.c_int),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    return lib


_lib: ct.CDLL | None = None
_libbpf: ct.CDLL | None = None


def libbpf() -> ct.CDLL:
    """libbpf, for the object-info and query calls libbcc does not export."""
    global _libbpf
    if _libbpf is None:
        lb = ct.CDLL("libbpf.so.1", use_errno=True)
        lb.bpf_obj_get_info_by_fd.argtypes = [ct.c_int, ct.c_void_p, ct.POINTER(ct.c_uint32)]
        lb.bpf_prog_query.argtypes = [
            ct.c_int,
            ct.c_int,
            ct.c_uint32,
            ct.POINTER(ct.c_uint32),
            ct.POINTER(ct.c_uint32),
            ct.POINTER(ct.c_uint32),
        ]
        lb.bpf_prog_get_fd_by_id.argtypes = [ct.c_uint32]
        lb.libbpf_find_vmlinux_btf_id.argtypes = [ct.c_char_p, ct.c_int]
        lb.bpf_prog_load.argtypes = [
            ct.c_int,
            ct.c_char_p,
            ct.c_char_p,
            ct.c_void_p,
            ct.c_size_t,
            ct.POINTER(_ProgLoadOpts),
        ]
        lb.bpf_raw_tracepoint_open.argtypes = [ct.c_char_p, ct.c_int]
        lb.bpf_link_create.argtypes = [ct.c_int, ct.c_int, ct.c_int, ct.c_void_p]
        lb.bpf_enable_stats.argtypes = [ct.c_int]
        _libbpf = lb
    return _libbpf


class _ProgLoadOpts(ct.Structure):
    """struct bpf_prog_load_opts up to log_buf (libbpf 1.0+; later fields
    stay at their defaults because `sz` ends here)."""

    _fields_ = [
        ("sz", ct.c_size_t),
        ("attempts", ct.c_int),
        ("expected_attach_type", ct.c_int),
        ("prog_btf_fd", ct.c_uint32),
        ("prog_flags", ct.c_uint32),
        ("prog_ifindex", ct.c_uint32),
        ("kern_version", ct.c_uint32),
        ("attach_btf_id", ct.c_uint32),
        ("attach_prog_fd", ct.c_uint32),
        ("attach_btf_obj_fd", ct.c_uint32),
        ("fd_array", ct.c_void_p),
        ("func_info", ct.c_void_p),
        ("func_info_cnt", ct.c_uint32),
        ("func_info_rec_size", ct.c_uint32),
        ("line_info", ct.c_void_p),
        ("line_info_cnt", ct.c_uint32),
        ("line_info_rec_size", ct.c_uint32),
        ("log_level", ct.c_uint32),
        ("log_size", ct.c_uint32),
        ("log_buf", ct.c_char_p),
    ]


def load_tp_btf(insns: bytes, name: str, tracepoint: str) -> int:
    """Load bytecode as a BTF tracepoint program (SEC("tp_btf/<tracepoint>")).

    BCC 0.26 compiles such a program but cannot load it: it knows only the
    fentry/fexit/LSM kinds of BPF_PROG_TYPE_TRACING."""
    lb = libbpf()
    btf_id = lb.libbpf_find_vmlinux_btf_id(tracepoint.encode(), BPF_TRACE_RAW_TP)
    if btf_id < 0:
        raise OSError(-btf_id, f"tracepoint {tracepoint} is not in the kernel's BTF")
    log = ct.create_string_buffer(1 << 20)
    opts = _ProgLoadOpts(
        sz=ct.sizeof(_ProgLoadOpts),
        expected_attach_type=BPF_TRACE_RAW_TP,
        attach_btf_id=btf_id,
        log_level=1,
        log_size=len(log),
        log_buf=ct.cast(log, ct.c_char_p),
    )
    fd = lb.bpf_prog_load(BPF_PROG_TYPE_TRACING, name[:15].encode(), b"GPL", insns, len(insns) // 8, ct.byref(opts))
    if fd < 0:
        err = ct.get_errno() or -fd
        verifier = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise OSError(err, f"Failed to load {name}: {os.strerror(err)}: {' | '.join(verifier)}")
    return int(fd)


def attach_tp_btf(prog_fd: int) -> int:
    """Attach a tp_btf program; returns the link (pin it to outlive the fd)."""
    return _check(libbpf().bpf_raw_tracepoint_open(None, prog_fd), "attach tracepoint")


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """Attach through a BPF link (e.g. to a cgroup); returns the link fd.
    The attachment lasts as long as the link: pin it to outlive the fd."""
    return _check(libbpf().bpf_link_create(prog_fd, target_fd, attach_type, None), "create link")


def lib() -> ct.CDLL:
    global _lib
    if _lib is None:
        _lib = _bind()
    return _lib


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ct.get_errno() or -ret
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def obj_pin(fd: int, path: str) -> None:
    _check(lib().bpf_obj_pin(fd, path.encode()), f"pin {path}")


def obj_get(path: str) -> int:
    return _check(lib().bpf_obj_get(path.encode()), f"open pinned {path}")


def prog_attach(prog_fd: int, target_fd: int, attach_type: int, flags: int = 0) -> None:
    _check(lib().bpf_prog_attach(prog_fd, target_fd, attach_type, flags), "attach program")


def prog_detach(prog_fd: int, target_fd: int, attach_type: int) -> bool:
    """Detach; False if it was not attached (ENOENT)."""
    ret = lib().bpf_prog_detach2(prog_fd, target_fd, attach_type)
    if ret < 0 and (ct.get_errno() or -ret) == errno.ENOENT:
        return False
    _check(ret, "detach program")
    return True


def _info(fd: int) -> bytes:
    buf = ct.create_string_buffer(256)
    size = ct.c_uint32(len(buf))
    _check(libbpf().bpf_obj_get_info_by_fd(fd, buf, ct.byref(size)), "object info")
    return buf.raw


def map_info(fd: int) -> tuple[int, int, int, int]:
    """(type, key_size, value_size, max_entries) of a map."""
    raw = _info(fd)
    typ, _id, key, value, entries = (int.from_bytes(raw[i : i + 4], "little") for i in range(0, 20, 4))
    return typ, key, value, entries


def prog_id_and_name(fd: int) -> tuple[int, str]:
    raw = _info(fd)
    return int.from_bytes(raw[4:8], "little"), raw[64:80].split(b"\0", 1)[0].decode()


def prog_run_stats(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program: the kernel counts them only while
    some process holds a statistics fd (enable_run_stats)."""
    raw = _info(fd)  # struct bpf_prog_info: run_time_ns at 192, run_cnt at 200
    return int.from_bytes(raw[192:200], "little"), int.from_bytes(raw[200:208], "little")


def enable_run_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): every program's run time and
    count are kept while the returned fd is open (it adds two clock reads to
    every run); closing it turns them off again."""
    return _check(libbpf().bpf_enable_stats(BPF_STATS_RUN_TIME), "enable BPF run statistics")


def prog_fd_by_id(prog_id: int) -> int:
    return _check(libbpf().bpf_prog_get_fd_by_id(prog_id), f"open program {prog_id}")


def attached_prog_ids(target_fd: int, attach_type: int) -> list[int]:
    """IDs of the programs attached to a cgroup (or map) for @attach_type."""
    ids = (ct.c_uint32 * 64)()
    count = ct.c_uint32(len(ids))
    flags = ct.c_uint32(0)
    _check(libbpf().bpf_prog_query(target_fd, attach_type, 0, ct.byref(flags), ids, ct.byref(count)), "query")
    return list(ids[: count.value])


class RawMap:
    """A BPF map addressed by fd, with fixed key and value sizes."""

    def __init__(self, fd: int, key_size: int, value_size: int) -> None:
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size

    def close(self) -> None:
        os.close(self.fd)

    def iter_keys(self) -> Iterator[bytes]:
        key = ct.create_string_buffer(self.key_size)
        prev: ct.Array[ct.c_char] | None = None
        while True:
            ret = lib().bpf_get_next_key(self.fd, prev, key)
            if ret < 0:
                if ct.get_errno() == errno.ENOENT:
                    return
                _check(ret, "iterate map")
            yield key.raw
            prev = ct.create_string_buffer(key.raw, self.key_size)

    def lookup(self, key: bytes) -> bytes | None:
        value = ct.create_string_buffer(self.value_size)
        if lib().bpf_lookup_elem(self.fd, key, value) < 0:
            if ct.get_errno() == errno.ENOENT:
                return None
            _check(-1, "map lookup")
        return value.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        _check(lib().bpf_update_elem(self.fd, key, value, flags), "map update")

    def delete(self, key: bytes) -> bool:
        if lib().bpf_delete_elem(self.fd, key) < 0:
            if ct.get_errno() == errno.ENOENT:
                return False
            _check(-1, "map delete")
        return True


def possible_cpus() -> int:
    """Number of possible CPUs: the stride of per-CPU map values."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def setns(fd: int, nstype: int) -> None:
    libc = ct.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ct.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")
