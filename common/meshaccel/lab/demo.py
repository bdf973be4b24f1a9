"""`meshaccel demo`: three pods on this host, kernel TCP vs meshaccel.

  pod a  ->  pod b                    direct pod-to-pod
  pod c (app -> Istio-style sidecar) -> pod b    the sidecar path

sockperf measures TCP ping-pong round trips on both paths, first with the
agent not running (kernel TCP), then with the real agent running standalone
and the pods enrolled. Afterwards the agent is stopped and uninstalled, and
every namespace is removed.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from meshaccel.lab.agent import AgentProcess
from meshaccel.lab.sidecar import add_sidecar
from meshaccel.lab.topology import Lab, Pod, wait_for

PORT = 11111
MESSAGE = 64


@dataclass(frozen=True)
class Latency:
    p50: float
    p99: float
    messages: int


def sockperf(client: Pod, server_ip: str, seconds: int) -> Latency:
    out = client.sh(
        "sockperf",
        "ping-pong",
        "--tcp",
        "--full-rtt",
        "-i",
        server_ip,
        "-p",
        str(PORT),
        "-m",
        str(MESSAGE),
        "-t",
        str(seconds),
    )
    pct = {float(k): float(v) for k, v in re.findall(r"percentile\s+([\d.]+)\s+=\s+([\d.]+)", out)}
    sent = re.search(r"SentMessages=(\d+)", out)
    return Latency(pct[50.0], pct[99.0], int(sent.group(1)) if sent else 0)


def run_demo(seconds: int = 3) -> int:
    print("meshaccel demo: building pods a, b and c (with sidecar) in network namespaces...")
    with Lab() as lab:
        a, b, c = lab.add_pod("a"), lab.add_pod("b"), lab.add_pod("c")
        add_sidecar(c)
        b.spawn(["sockperf", "server", "--tcp", "-i", b.ip, "-p", str(PORT)], stdout=subprocess.DEVNULL)
        wait_for(lambda: f":{PORT} " in b.sh("ss", "-Hltn"), what="sockperf server")
        paths = {"pod a -> pod b (direct)": a, "pod c -> sidecar c -> pod b": c}

        print(f"measuring kernel TCP ({seconds}s per path, {MESSAGE} B ping-pong)...")
        kernel = {name: sockperf(pod, b.ip, seconds) for name, pod in paths.items()}

        agent = AgentProcess()
        try:
            print("starting the agent (compiles and attaches the eBPF datapath)...")
            agent.start()
            agent.enrol([a, b, c])
            print(f"measuring with meshaccel ({seconds}s per path)...")
            before = agent.metrics()
            accel = {name: sockperf(pod, b.ip, seconds) for name, pod in paths.items()}
            after = agent.metrics()
        finally:
            agent.close()

    print()
    print(f"TCP round-trip latency, {MESSAGE} B messages (sockperf ping-pong, microseconds)")
    columns = ("kernel p50", "meshaccel p50", "ratio", "kernel p99", "meshaccel p99", "ratio")
    header = f"{'path':32} {columns[0]:>11} {columns[1]:>14} {columns[2]:>6}   "
    header += f"{columns[3]:>11} {columns[4]:>14} {columns[5]:>6}"
    print(header)
    print("-" * len(header))
    for name in paths:
        k, m = kernel[name], accel[name]
        print(
            f"{name:32} {k.p50:11.1f} {m.p50:14.1f} {m.p50 / k.p50:6.2f}   "
            f"{k.p99:11.1f} {m.p99:14.1f} {m.p99 / k.p99:6.2f}"
        )
    print()
    print("agent bypass counters during the accelerated run")

    def d(name: str) -> int:
        return int(after.get(name, 0) - before.get(name, 0))

    rows = [
        ("connections paired", "meshaccel_pairs_total"),
        ("messages redirected", "meshaccel_redirected_messages_total"),
        ("bytes redirected", "meshaccel_redirected_bytes_total"),
        ("messages via kernel stack (native)", "meshaccel_passed_messages_total{reason=native}"),
        ("messages via kernel stack (peer gone)", "meshaccel_passed_messages_total{reason=peer_gone}"),
        ("insert refusals (sockhash full)", "meshaccel_insert_refusals_total{reason=sockhash_full}"),
    ]
    for label, metric in rows:
        print(f"  {label:40} {d(metric):>12}")
    print()
    print("Kernel TCP messages sent:", ", ".join(f"{n}: {kernel[n].messages}" for n in paths))
    print("meshaccel messages sent: ", ", ".join(f"{n}: {accel[n].messages}" for n in paths))
    print("One run on a shared VM: figures move between runs; see bench/ for repeated, interleaved runs.")
    return 0
