"""`make demo` (python -m meshaccel_lab.demo): three pods on this host, kernel TCP vs meshaccel.

  pod a  ->  pod b                    direct pod-to-pod
  pod c (app -> Istio-style sidecar) -> pod b    the sidecar path

sockperf measures TCP ping-pong round trips on both paths with the real agent
running standalone, alternating between the pods not enrolled (kernel TCP)
and enrolled (meshaccel). Afterwards the agent is stopped and uninstalled,
and every namespace is removed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass

from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.sidecar import add_sidecar
from meshaccel_lab.topology import Lab, Pod, wait_for

PORT = 11111
MESSAGE = 64
KERNEL, ACCEL = "kernel", "meshaccel"
CONFIGS = (KERNEL, ACCEL)


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


def _median(values: list[float]) -> float:
    return statistics.median(values)


def run_demo(seconds: int = 2, rounds: int = 3) -> int:
    print("meshaccel demo: building pods a, b and c (with sidecar) in network namespaces...")
    with Lab() as lab:
        a, b, c = lab.add_pod("a"), lab.add_pod("b"), lab.add_pod("c")
        add_sidecar(c)
        b.spawn(["sockperf", "server", "--tcp", "-i", b.ip, "-p", str(PORT)], stdout=subprocess.DEVNULL)
        wait_for(lambda: f":{PORT} " in b.sh("ss", "-Hltn"), what="sockperf server")
        paths = {"pod a -> pod b (direct)": a, "pod c -> sidecar c -> pod b": c}
        runs: dict[tuple[str, str], list[Latency]] = {(cfg, n): [] for cfg in CONFIGS for n in paths}

        agent = AgentProcess()
        try:
            print("starting the agent (compiles and attaches the eBPF datapath)...")
            agent.start()
            print(f"measuring: {rounds} rounds x {len(CONFIGS)} configurations x {len(paths)} paths, {seconds}s each")
            counters: dict[str, float] = {}
            for _ in range(rounds):
                # Interleaved (kernel, meshaccel, kernel, ...): a noisy VM
                # drifts, and drift must not favour either side.
                for cfg in CONFIGS:
                    if cfg == KERNEL:
                        agent.unenrol([a, b, c])
                    else:
                        agent.enrol([a, b, c])
                        before = agent.metrics()
                    for name, pod in paths.items():
                        runs[(cfg, name)].append(sockperf(pod, b.ip, seconds))
                    if cfg == ACCEL:
                        after = agent.metrics()
                        for key, value in after.items():
                            counters[key] = counters.get(key, 0.0) + value - before.get(key, 0.0)
        finally:
            agent.close()

    print()
    print(f"TCP round-trip latency, {MESSAGE} B messages (sockperf ping-pong, microseconds,")
    print(f"median of {rounds} interleaved runs; kernel TCP = same pods, not enrolled)")
    columns = ("kernel p50", "meshaccel p50", "ratio", "kernel p99", "meshaccel p99", "ratio")
    header = f"{'path':32} {columns[0]:>11} {columns[1]:>14} {columns[2]:>6}   "
    header += f"{columns[3]:>11} {columns[4]:>14} {columns[5]:>6}"
    print(header)
    print("-" * len(header))
    for name in paths:
        k50 = _median([r.p50 for r in runs[(KERNEL, name)]])
        m50 = _median([r.p50 for r in runs[(ACCEL, name)]])
        k99 = _median([r.p99 for r in runs[(KERNEL, name)]])
        m99 = _median([r.p99 for r in runs[(ACCEL, name)]])
        print(f"{name:32} {k50:11.1f} {m50:14.1f} {m50 / k50:6.2f}   {k99:11.1f} {m99:14.1f} {m99 / k99:6.2f}")
    print()
    print("agent bypass counters during the accelerated runs")
    rows = [
        ("connections paired", "meshaccel_pairs_total"),
        ("messages redirected", "meshaccel_redirected_messages_total"),
        ("bytes redirected", "meshaccel_redirected_bytes_total"),
        ("messages via kernel stack (native)", "meshaccel_passed_messages_total{reason=native}"),
        ("messages via kernel stack (peer gone)", "meshaccel_passed_messages_total{reason=peer_gone}"),
        ("insert refusals (sockhash full)", "meshaccel_insert_refusals_total{reason=sockhash_full}"),
    ]
    for label, metric in rows:
        print(f"  {label:40} {int(counters.get(metric, 0)):>12}")
    print()
    print("A shared VM is noisy: figures move between runs. `make bench` reports repeated medians with spread.")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meshaccel_lab.demo", description=__doc__)
    p.add_argument("--seconds", type=int, default=2, help="sockperf run time per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of kernel TCP and meshaccel")
    args = p.parse_args(argv)
    return run_demo(args.seconds, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
