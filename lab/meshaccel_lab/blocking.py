"""A blocking recv() woken without data (README, Limitations).

tcp_bpf_recvmsg() (net/ipv4/tcp_bpf.c), the recvmsg of every socket in a
sockhash, waits once in tcp_msg_wait_data() and answers a wake-up that
brought no data with -EAGAIN; tcp_recvmsg_locked() loops until data, EOF, an
error, the timeout or a signal (-ERESTARTSYS, restarted under SA_RESTART).

A client blocks in recv() on a connection to a server that answers one byte
after 0.6 s, while one of these happens to its socket:

  signal          SIGUSR1 (an SA_RESTART handler) reaches the reader at 0.2 s
  duplex          a second thread writes 64 KiB (16 x 4 KiB) on the same
                  socket: redirected, within the flow bound
  duplex-spilled  the second thread writes 64 MiB while the server drains at
                  about 32 MB/s: with a small flow bound the direction spills
                  to the stack, the writer blocks on its send buffer, and the
                  ACKs wake the socket's wait queue (sk_stream_write_space),
                  the queue the reader sleeps on

run() gives what the blocked recv() returned and when. Used by
scripts/repro_blocking_read.py and tests/datapath/test_flow_control.py.
"""

from __future__ import annotations

from typing import Any

from meshaccel_lab.repro import exchange
from meshaccel_lab.topology import Pod

CASES = ("signal", "duplex", "duplex-spilled")

SERVER = r"""
import socket, sys, threading, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(1)
c, _ = srv.accept()
def drain():
    while c.recv(1 << 16):
        time.sleep(0.002)
threading.Thread(target=drain, daemon=True).start()
time.sleep(0.6); c.sendall(b"x"); time.sleep(1.0); c.close()
"""

CLIENT = r"""
import json, os, signal, socket, sys, threading, time
case = sys.argv[3]
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
signal.signal(signal.SIGUSR1, lambda *_: None); signal.siginterrupt(signal.SIGUSR1, False)
if case == "signal":
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
else:
    count, size = (1024, 65536) if case == "duplex-spilled" else (16, 4096)
    def write():
        try:
            for _ in range(count):
                s.sendall(b"w" * size)
        except OSError:
            pass
    threading.Thread(target=write, daemon=True).start()
t0 = time.monotonic()
try:
    got = s.recv(1)
    out = {"returned": got.decode(), "after_s": round(time.monotonic() - t0, 3)}
except OSError as exc:
    out = {"error": type(exc).__name__, "errno": exc.errno, "after_s": round(time.monotonic() - t0, 3)}
print(json.dumps(out), flush=True)
os._exit(0)
"""


def run(client: Pod, server: Pod, case: str, port: int) -> dict[str, Any]:
    """One blocked recv() in @client on a connection to @server."""
    return exchange(client, server, SERVER, CLIENT, port, case)
