"""Deterministic check of the boundary read (README, Limitations; bpf/fin_gate.c).

A writer sends the flow bound plus 256 KiB in 64 KiB writes and shuts its
side down. The reader waits 1 s, so the spilled stack bytes (and the FIN, were
it let in) are queued behind the redirected ones, then reads with 1 MiB
reads. HAProxy ends the stream at the first read that is shorter than asked
while EPOLLRDHUP is set; on plain TCP such a read is the last one with data.
The script prints the reads, how long the EOF took after the last data (the
FIN gate makes the sender retransmit the FIN) and whether that inference would
have lost bytes: first not enrolled (kernel TCP), then accelerated.

  .venv/bin/python scripts/repro_boundary_read.py     (as root, after make setup)
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.repro import agent_and_lab
from meshaccel_lab.topology import Lab, wait_for

BOUND = 256 << 10
PORT = 8095

READER = r"""
import json, select, socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: a window as wide as autotuning grows
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(1)
c, _ = srv.accept(); time.sleep(1.0)
reads, total, lost_at, last_data = [], 0, None, time.monotonic()
while True:
    p = select.poll(); p.register(c, select.POLLIN | select.POLLRDHUP)
    ev = dict(p.poll(1000)).get(c.fileno(), 0)
    data = c.recv(1 << 20)
    if not data:
        eof_wait = time.monotonic() - last_data
        break
    last_data = time.monotonic()
    short_with_rdhup = len(data) < (1 << 20) and bool(ev & select.POLLRDHUP)
    total += len(data)
    if short_with_rdhup and lost_at is None:
        lost_at = total
    reads.append([len(data), bool(ev & select.POLLRDHUP)])
print(json.dumps({"total": total, "haproxy_would_stop_at": lost_at, "reads": reads[:20],
                  "eof_wait_s": round(eof_wait, 3)}), flush=True)
"""

WRITER = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for _ in range(int(sys.argv[3]) >> 16): s.sendall(b"x" * 65536)
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
"""


def run(lab: Lab, enrolled: bool, agent: AgentProcess) -> dict[str, Any]:
    a, b = lab.add_pod(f"a{int(enrolled)}"), lab.add_pod(f"b{int(enrolled)}")
    if enrolled:
        agent.enrol([a, b])
    reader = subprocess.Popen(
        ["ip", "netns", "exec", b.netns, sys.executable, "-c", READER, str(PORT)], stdout=subprocess.PIPE, text=True
    )
    wait_for(lambda: f":{PORT} " in b.sh("ss", "-Hltn"), what="the reader")
    total = BOUND + (256 << 10)  # 64 KiB writes: the fifth one spills
    subprocess.run(
        ["ip", "netns", "exec", a.netns, sys.executable, "-c", WRITER, b.ip, str(PORT), str(total)],
        check=True,
        timeout=60,
    )
    out, _ = reader.communicate(timeout=60)
    result = dict(json.loads(out.strip().splitlines()[-1]))
    result["sent"] = total
    return result


def main() -> int:
    with agent_and_lab("--flow-bound-bytes", str(BOUND)) as (agent, lab):
        for enrolled in (False, True):
            r = run(lab, enrolled, agent)
            stop = r["haproxy_would_stop_at"]
            verdict = "loses nothing" if stop in (None, r["total"]) else f"loses {r['total'] - stop} bytes"
            print(
                f"{'accelerated' if enrolled else 'kernel TCP '}: {json.dumps(r)}\n  -> HAProxy's inference {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
