"""A splice() reader on an accelerated socket (README, Limitations).

splice() from a TCP socket is tcp_splice_read(), which reads the TCP receive
queue alone (tcp_read_sock() over sk_receive_queue, net/ipv4/tcp.c); it never
looks at the psock's ingress queue, where redirected bytes wait. poll() does
see them (sk_msg_is_readable), so a splicing event loop is told "readable",
splices nothing, and is told "readable" again: the bytes never come.

The server sends 5 bytes and closes 2 s later. The client waits for POLLIN,
splices into a pipe from the socket made non-blocking (as an event loop
does), then splices blocking (which returns at the server's close at the
latest), then reads with recv(). run() gives what each step saw. Used by scripts/repro_splice_read.py and
tests/datapath/test_splice.py.
"""

from __future__ import annotations

from typing import Any

from meshaccel_lab.repro import exchange
from meshaccel_lab.topology import Pod

SERVER = r"""
import socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(1)
c, _ = srv.accept(); c.sendall(b"hello"); time.sleep(2.0); c.close()
"""

CLIENT = r"""
import json, os, select, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
p = select.poll(); p.register(s, select.POLLIN)
readable = bool(p.poll(1000))
r, w = os.pipe()
s.setblocking(False)  # as an event loop splices
try:
    spliced = os.splice(s.fileno(), w, 65536)
except BlockingIOError:
    spliced = "EAGAIN"
s.setblocking(True)
t0 = time.monotonic()
blocking = os.splice(s.fileno(), w, 65536)  # returns at the server's close at the latest
print(json.dumps({"readable": readable, "spliced": spliced, "blocking_splice": blocking,
                  "blocking_splice_s": round(time.monotonic() - t0, 1), "recv": s.recv(100).decode()}), flush=True)
"""


def run(client: Pod, server: Pod, port: int) -> dict[str, Any]:
    return exchange(client, server, SERVER, CLIENT, port)
