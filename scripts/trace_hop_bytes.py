"""Per-hop byte accounting for a data-integrity hunt: which hop lost bytes.

Counts, for every TCP socket with 8080, 15001 or 15006 at either end (the
ports of the lab's shapes), what its application sent (tracepoint
sock_send_length) and read (sock_recv_length, MSG_PEEK left out), how many
reads returned 0 (EOF), and at its destruction (tcp_destroy_sock) how many
bytes went through the TCP stack (write_seq / copied_seq moved) and how many
sat in its TCP receive queue unread (rcv_nxt - copied_seq). Then it pairs
the two ends of each connection by the client's address and port and prints
every pair where one end's sent differs from the other's read.

Raw tracepoints only: this kernel has no kprobes and refuses fentry. Struct
offsets come from the running kernel's BTF, as the datapath's do.

  .venv/bin/python scripts/trace_hop_bytes.py record OUT.jsonl SECONDS
  .venv/bin/python scripts/trace_hop_bytes.py check OUT.jsonl
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from typing import Any, TextIO

SERVER_PORTS = {8080, 15001, 15006}

PROGRAM = r"""
struct tally { u64 sent, recv, eofs, t0; u32 cseq0, wseq0, lport, rport, laddr, raddr; };
struct gone { u64 sent, recv, eofs, t0; u32 cseq0, wseq0, lport, rport, laddr, raddr;
              u32 cseq, wseq, rnxt; };
BPF_HASH(tallies, u64, struct tally, 65536);
BPF_PERF_OUTPUT(destroyed);
#define RD(dst, sk, off) bpf_probe_read_kernel(&(dst), sizeof(dst), (char *)(sk) + (off))

static __always_inline struct tally *tally_of(void *sk) {
  u64 key = (u64)sk;
  struct tally *t = tallies.lookup(&key), z = {};
  u16 lport = 0, rport = 0;
  if (t) return t;
  RD(lport, sk, O_NUM); RD(rport, sk, O_DPORT); rport = bpf_ntohs(rport);
  if (!(IS_SERVER_PORT(lport) || IS_SERVER_PORT(rport))) return 0;
  z.lport = lport; z.rport = rport; RD(z.laddr, sk, O_SADDR); RD(z.raddr, sk, O_DADDR);
  RD(z.cseq0, sk, O_CSEQ); RD(z.wseq0, sk, O_WSEQ); z.t0 = bpf_ktime_get_ns();
  tallies.update(&key, &z);
  return tallies.lookup(&key);
}

RAW_TRACEPOINT_PROBE(sock_send_length) {
  struct tally *t = tally_of((void *)ctx->args[0]);
  int ret = (int)ctx->args[1];
  if (t && ret > 0) t->sent += ret;
  return 0;
}

RAW_TRACEPOINT_PROBE(sock_recv_length) {
  struct tally *t;
  int ret = (int)ctx->args[1], flags = (int)ctx->args[2];
  if (flags & 2 /* MSG_PEEK */) return 0;
  t = tally_of((void *)ctx->args[0]);
  if (!t) return 0;
  if (ret > 0) t->recv += ret;
  if (ret == 0) t->eofs++;
  return 0;
}

RAW_TRACEPOINT_PROBE(tcp_destroy_sock) {
  void *sk = (void *)ctx->args[0];
  u64 key = (u64)sk;
  struct tally *t = tallies.lookup(&key);
  struct gone g = {};
  if (!t) return 0;
  g.sent = t->sent; g.recv = t->recv; g.eofs = t->eofs; g.t0 = t->t0;
  g.cseq0 = t->cseq0; g.wseq0 = t->wseq0; g.lport = t->lport; g.rport = t->rport;
  g.laddr = t->laddr; g.raddr = t->raddr;
  RD(g.cseq, sk, O_CSEQ); RD(g.wseq, sk, O_WSEQ); RD(g.rnxt, sk, O_RNXT);
  destroyed.perf_submit(ctx, &g, sizeof(g));
  tallies.delete(&key);
  return 0;
}
"""

MEMBERS = {
    "O_NUM": ("sock_common", "skc_num"),
    "O_DPORT": ("sock_common", "skc_dport"),
    "O_DADDR": ("sock_common", "skc_daddr"),
    "O_SADDR": ("sock_common", "skc_rcv_saddr"),
    "O_CSEQ": ("tcp_sock", "copied_seq"),
    "O_WSEQ": ("tcp_sock", "write_seq"),
    "O_RNXT": ("tcp_sock", "rcv_nxt"),
}


def _ip(addr: int) -> str:
    return socket.inet_ntoa(struct.pack("<I", addr))


def record(path: str, seconds: float) -> None:
    from meshaccel_agent.kernel.btf import KernelBTF
    from meshaccel_agent.kernel.headers import choose_headers

    choose_headers("/tmp/meshaccel-trace-headers")
    from bcc import BPF  # after choose_headers: it sets BCC_KERNEL_SOURCE

    btf = KernelBTF()
    cflags = [f"-D{name}={btf.offsetof(s, m)}" for name, (s, m) in MEMBERS.items()]
    cflags.append("-DIS_SERVER_PORT(p)=(" + " || ".join(f"(p) == {p}" for p in sorted(SERVER_PORTS)) + ")")
    bpf = BPF(text=PROGRAM, cflags=cflags)
    with open(path, "a") as out:
        _poll(bpf, out, seconds)


def _poll(bpf: Any, out: TextIO, seconds: float) -> None:
    def on_destroyed(_cpu: int, data: int, _size: int) -> None:
        g = bpf["destroyed"].event(data)
        rec = {
            "t0": g.t0,
            "local": f"{_ip(g.laddr)}:{g.lport}",
            "remote": f"{_ip(g.raddr)}:{g.rport}",
            "sent": g.sent,
            "read": g.recv,
            "eofs": g.eofs,
            "stack_sent": (g.wseq - g.wseq0) & 0xFFFFFFFF,  # FIN included
            "stack_read": (g.cseq - g.cseq0) & 0xFFFFFFFF,
            "unread_in_tcp_queue": (g.rnxt - g.cseq) & 0xFFFFFFFF,  # FIN included
        }
        out.write(json.dumps(rec) + "\n")
        out.flush()

    bpf["destroyed"].open_perf_buffer(on_destroyed, page_cnt=1024)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        bpf.perf_buffer_poll(500)


def check(path: str) -> int:
    with open(path) as f:
        records = [json.loads(line) for line in f]
    clients: list[dict[str, Any]] = []
    servers: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if int(r["local"].rsplit(":", 1)[1]) in SERVER_PORTS:
            servers.setdefault(r["remote"], []).append(r)
        else:
            clients.append(r)
    pairs = bad = 0
    for c in clients:
        near = [s for s in servers.get(c["local"], []) if abs(s["t0"] - c["t0"]) < 5e9]
        if len(near) != 1:
            continue
        s, pairs = near[0], pairs + 1
        if c["sent"] != s["read"] or s["sent"] != c["read"]:
            bad += 1
            print(f"MISMATCH\n  client {json.dumps(c)}\n  server {json.dumps(s)}")
    print(f"{pairs} connections paired, {bad} with a byte count that differs")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "record":
        record(sys.argv[2], float(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    else:
        sys.exit(__doc__)
