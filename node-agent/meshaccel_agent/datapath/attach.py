"""Attaching sockops programs to a cgroup2 directory, idempotently.

BCC's Python API offers only the legacy bpf_prog_attach(), whose attachments
outlive the process (even SIGKILL): exactly what a node agent wants, since
acceleration must not stop while the agent restarts. The kernel refuses a
second attachment of the same program, so we ask what is attached first.
"""

from __future__ import annotations

import os

from meshaccel_agent.kernel import syscalls as sc
from meshaccel_agent.kernel.compile import SOCKOPS_FN

# The kernel keeps 15 characters of a program name.
SOCKOPS_KERNEL_NAME = SOCKOPS_FN[:15]


def _open_cgroup(cgroup: str) -> int:
    return os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)


def our_sockops_on(cgroup: str) -> list[int]:
    """IDs of meshaccel sockops programs attached to @cgroup (any generation)."""
    cg = _open_cgroup(cgroup)
    try:
        ours = []
        for prog_id in sc.attached_prog_ids(cg, sc.BPF_CGROUP_SOCK_OPS):
            try:
                fd = sc.prog_fd_by_id(prog_id)
            except OSError:
                continue  # detached meanwhile
            try:
                if sc.prog_id_and_name(fd)[1] == SOCKOPS_KERNEL_NAME:
                    ours.append(prog_id)
            finally:
                os.close(fd)
        return ours
    finally:
        os.close(cg)


def is_attached(prog_fd: int, cgroup: str) -> bool:
    cg = _open_cgroup(cgroup)
    try:
        prog_id, _ = sc.prog_id_and_name(prog_fd)
        return prog_id in sc.attached_prog_ids(cg, sc.BPF_CGROUP_SOCK_OPS)
    finally:
        os.close(cg)


def attach_sockops(prog_fd: int, cgroup: str) -> None:
    """Attach a sockops program to @cgroup unless it already is."""
    if is_attached(prog_fd, cgroup):
        return
    cg = _open_cgroup(cgroup)
    try:
        # ALLOW_MULTI: other products' sockops programs on this cgroup keep
        # running and ours does not block theirs.
        sc.prog_attach(prog_fd, cg, sc.BPF_CGROUP_SOCK_OPS, sc.BPF_F_ALLOW_MULTI)
    finally:
        os.close(cg)


def detach_sockops(prog_fd: int, cgroup: str) -> bool:
    """Detach; False if it was not attached."""
    cg = _open_cgroup(cgroup)
    try:
        return sc.prog_detach(prog_fd, cg, sc.BPF_CGROUP_SOCK_OPS)
    finally:
        os.close(cg)


def detach_sockops_by_id(cgroup: str, prog_id: int) -> bool:
    fd = sc.prog_fd_by_id(prog_id)
    try:
        return detach_sockops(fd, cgroup)
    finally:
        os.close(fd)
