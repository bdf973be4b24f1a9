"""Run code inside another network namespace; resolve a netns to its cookie."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from meshaccel_agent.kernel.syscalls import CLONE_NEWNET, SO_NETNS_COOKIE, setns

__all__ = ["SO_NETNS_COOKIE", "current_netns_cookie", "in_netns", "netns_cookie"]

T = TypeVar("T")


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call @fn inside the network namespace at @path and return its result.

    setns() changes only the calling thread's namespace, so a short-lived
    thread enters the namespace and runs @fn there; the agent's other threads
    never leave the host namespace. Sockets @fn opens belong to that netns.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            setns(fd, CLONE_NEWNET)
            result.append(fn())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    try:
        t = threading.Thread(target=run, name="in-netns")
        t.start()
        t.join()
    finally:
        os.close(fd)
    if failure:
        raise OSError(f"{path}: {failure[0]}")
    return result[0]


def current_netns_cookie() -> int:
    """The cookie of the calling thread's netns (SO_NETNS_COOKIE, Linux 5.14+)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")


def netns_cookie(path: str) -> int:
    """The netns cookie of the namespace at @path (bpf_get_netns_cookie())."""
    try:
        return in_netns(path, current_netns_cookie)
    except OSError as exc:
        raise OSError(f"cannot read netns cookie: {exc}") from None
