"""Resolve a network namespace file to the cookie the BPF programs see."""

from __future__ import annotations

import os
import socket
import threading

from meshaccel.agent.syscalls import CLONE_NEWNET, SO_NETNS_COOKIE, setns

__all__ = ["SO_NETNS_COOKIE", "netns_cookie"]


def netns_cookie(path: str) -> int:
    """The netns cookie of the namespace at @path (bpf_get_netns_cookie()).

    setns() changes only the calling thread's namespace, so a short-lived
    thread enters the namespace, opens a socket there and asks it for its
    namespace cookie (SO_NETNS_COOKIE, Linux 5.14+). The agent's other threads
    never leave the host namespace.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    result: list[int] = []
    failure: list[BaseException] = []

    def probe() -> None:
        try:
            setns(fd, CLONE_NEWNET)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                raw = s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
            result.append(int.from_bytes(raw, "little"))
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    try:
        t = threading.Thread(target=probe, name="netns-cookie")
        t.start()
        t.join()
    finally:
        os.close(fd)
    if failure:
        raise OSError(f"{path}: cannot read netns cookie: {failure[0]}")
    return result[0]
