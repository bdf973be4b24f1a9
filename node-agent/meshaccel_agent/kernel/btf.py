"""Byte offsets of kernel struct members, read from the running kernel's BTF.

BCC compiles against whatever kernel headers it finds, and on nodes without
the running kernel's own headers those are a distribution's generic ones:
their layout of `struct tcp_sock` or `struct sk_psock` is another kernel's.
The few members the programs read through BTF pointers (bpf_skc_to_tcp_sock)
are therefore located here, in /sys/kernel/btf/vmlinux, through libbpf's BTF
API, and handed to the compiler as -D constants. The verifier checks every
such load against the same BTF, so an offset can never point outside the
struct; this module makes it point at the right member.
"""

from __future__ import annotations

import ctypes as ct
from functools import cache

BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_TYPEDEF = 8
BTF_KIND_VOLATILE = 9
BTF_KIND_CONST = 10
BTF_KIND_RESTRICT = 11
_MODIFIERS = (BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT)


class _BtfType(ct.Structure):
    _fields_ = [("name_off", ct.c_uint32), ("info", ct.c_uint32), ("size_or_type", ct.c_uint32)]


class _BtfMember(ct.Structure):
    _fields_ = [("name_off", ct.c_uint32), ("type", ct.c_uint32), ("offset", ct.c_uint32)]


class BTFError(RuntimeError):
    pass


class KernelBTF:
    def __init__(self) -> None:
        lib = ct.CDLL("libbpf.so.1", use_errno=True)
        lib.btf__load_vmlinux_btf.restype = ct.c_void_p
        lib.btf__find_by_name_kind.argtypes = [ct.c_void_p, ct.c_char_p, ct.c_uint32]
        lib.btf__find_by_name_kind.restype = ct.c_int32
        lib.btf__type_by_id.argtypes = [ct.c_void_p, ct.c_uint32]
        lib.btf__type_by_id.restype = ct.POINTER(_BtfType)
        lib.btf__name_by_offset.argtypes = [ct.c_void_p, ct.c_uint32]
        lib.btf__name_by_offset.restype = ct.c_char_p
        lib.btf__free.argtypes = [ct.c_void_p]
        self._lib = lib
        self._btf = lib.btf__load_vmlinux_btf()
        if not self._btf:
            raise BTFError("the kernel has no BTF (/sys/kernel/btf/vmlinux)")

    def close(self) -> None:
        self._lib.btf__free(self._btf)

    def _type(self, type_id: int) -> _BtfType:
        t: _BtfType = self._lib.btf__type_by_id(self._btf, type_id).contents
        return t

    @staticmethod
    def _kind(t: _BtfType) -> int:
        return int((t.info >> 24) & 0x1F)

    def _resolve(self, type_id: int) -> tuple[int, _BtfType]:
        t = self._type(type_id)
        while self._kind(t) in _MODIFIERS:
            type_id = t.size_or_type
            t = self._type(type_id)
        return type_id, t

    def _members(self, t: _BtfType) -> list[_BtfMember]:
        vlen = t.info & 0xFFFF
        first = ct.cast(ct.addressof(t) + ct.sizeof(_BtfType), ct.POINTER(_BtfMember))
        return [first[i] for i in range(vlen)]

    def _find(self, t: _BtfType, member: str) -> int | None:
        """Bit offset of @member in @t, looking into anonymous members."""
        bitfield_offsets = bool((t.info >> 31) & 1)
        for m in self._members(t):
            bits = m.offset & 0xFFFFFF if bitfield_offsets else m.offset
            name = self._lib.btf__name_by_offset(self._btf, m.name_off) or b""
            if name.decode() == member:
                return int(bits)
            if not name:
                _, inner = self._resolve(m.type)
                if self._kind(inner) in (BTF_KIND_STRUCT, BTF_KIND_UNION):
                    found = self._find(inner, member)
                    if found is not None:
                        return int(bits) + found
        return None

    def offsetof(self, struct: str, member: str) -> int:
        type_id = self._lib.btf__find_by_name_kind(self._btf, struct.encode(), BTF_KIND_STRUCT)
        if type_id < 0:
            raise BTFError(f"struct {struct} is not in the kernel's BTF")
        bits = self._find(self._type(type_id), member)
        if bits is None:
            raise BTFError(f"struct {struct} has no member {member}")
        if bits % 8:
            raise BTFError(f"{struct}.{member} is a bitfield")
        return bits // 8


#: -D name -> (struct, member) of everything the programs read through BTF.
MEMBERS = {
    "MA_OFF_TCP_WRITE_SEQ": ("tcp_sock", "write_seq"),
    "MA_OFF_TCP_COPIED_SEQ": ("tcp_sock", "copied_seq"),
    "MA_OFF_SK_USER_DATA": ("sock", "sk_user_data"),
    "MA_OFF_SK_WRITE_PENDING": ("sock", "sk_write_pending"),
    "MA_OFF_PSOCK_MSG_TOT_LEN": ("sk_psock", "msg_tot_len"),
    "MA_OFF_PSOCK_REFCNT": ("sk_psock", "refcnt"),
}


@cache
def kernel_offsets() -> tuple[tuple[str, int], ...]:
    """(define, offset) for MEMBERS, from the running kernel."""
    btf = KernelBTF()
    try:
        return tuple((define, btf.offsetof(s, m)) for define, (s, m) in sorted(MEMBERS.items()))
    finally:
        btf.close()
