"""`make bench` / `make bench-quick`: kernel TCP vs meshaccel vs the AF_UNIX floor.

Builds pods in network namespaces (meshaccel_lab), runs every workload in
every configuration, interleaved by repetition (configurations rotate order
each repetition), and writes bench/results/latest.{json,md} and PNG plots.

Configurations:
  kernel        no meshaccel program attached at all
  not_enrolled  the real agent running, programs attached, pods not enrolled
  accelerated   the real agent running, pods enrolled
  af_unix_floor the same mabench workload over an AF_UNIX stream socket
                between processes in the same two namespaces

CPU placement: servers, latency clients and the sidecar proxies are pinned to
CPU 0, the clients of bulk, HTTP and connection workloads to CPU 1. On these
VMs a cross-CPU wake-up costs ~25 us each way, more than the whole TCP stack;
pinning measures the stack, which is what meshaccel removes, and keeps every
configuration on the same placement. One cross-CPU measurement (path
"direct-xcpu") shows the unpinned case.

Two more phases:
  overhead      "not enrolled" against kernel TCP in back-to-back pairs of
                short runs (order alternating), one cell at a time, every
                process on CPU 0: the cost meshaccel puts on traffic it does
                not accelerate. On one CPU every workload is CPU-bound, so a
                rate is the inverse of the CPU cost per operation, which is
                what the hooks add to; across two vCPUs the cross-CPU wake-ups
                (an idle vCPU halts, and waking it is a trip through the
                hypervisor) swing a rate by tens of percent from run to run,
                enough to hide a 2 % cost
  hook cost     each program's own price per operation (hookcost), attached
                alone and all together, plus the kernel's run counts
  slow reader   a writer flooding a reader that reads 16 MiB/s, then fast:
                memory and the writer's rate, kernel TCP vs accelerated
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.report import ACCEL, FLOOR, KERNEL, NOT_ENROLLED, Sample, markdown, to_json
from meshaccel_agent.datapath.pins import PinRoot
from meshaccel_agent.kernel import syscalls as sc
from meshaccel_agent.kernel.host import find_cgroup2
from meshaccel_api.names import DEFAULT_BPFFS, DEFAULT_CACHE_DIR
from meshaccel_api.v1alpha1 import FlowControl
from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.hostmounts import HostMounts
from meshaccel_lab.servers import REDIS_PORT, start_nginx, start_redis
from meshaccel_lab.sidecar import add_sidecar
from meshaccel_lab.sockmem import Sampler
from meshaccel_lab.topology import Lab, Pod, wait_for

#: Clients of throughput workloads run on CPU 1, away from the servers...
CLIENT_CPU = ("taskset", "-c", "1")
#: ...except in the overhead phase, where everything shares CPU 0.
SAME_CPU = ("taskset", "-c", "0")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MABENCH_PORT, IPERF_PORT, HOLD_PORT = 9000, 5201, 9100


@dataclass(frozen=True)
class Plan:
    mode: str
    reps: int
    seconds: float
    latency_sizes: tuple[int, ...]
    bulk_sizes: tuple[int, ...]
    connections: int  # per short-connection run
    idle_seconds: float
    overhead_pairs: int  # back-to-back (kernel, not enrolled) pairs per cell
    overhead_seconds: float
    slow_mib: int  # the slow-reader stream


PLANS = {
    "quick": Plan("quick", 2, 1.0, (64, 1024, 16384, 65536), (4096, 65536, 1 << 20), 1500, 3, 4, 1.0, 128),
    "full": Plan(
        "full", 3, 3.0, (64, 1024, 16384, 65536), (4096, 16384, 65536, 262144, 1 << 20), 4000, 10, 16, 1.0, 256
    ),
}

#: The cells of the overhead phase: (path, workload, param).
OVERHEAD_CELLS = (
    ("direct", "latency", 64),
    ("direct", "latency", 16384),
    ("direct", "bulk", 65536),
    ("direct", "bulk", 1 << 20),
    ("direct", "tps", 1),
    ("direct", "tps", 32),
    ("direct", "connrate", 1),
    ("sidecar", "latency", 1024),
    ("sidecar", "bulk", 65536),
    ("sidecar", "tps", 32),
    ("sidecar", "connrate", 1),
)
#: hookcost operations and how many of each one run averages.
HOOK_OPS = {"pingpong": 200_000, "connect": 5_000}
#: The hook-cost configurations besides kernel: which programs are attached.
HOOK_SETS = {"recv": ("recv",), "fin_gate": ("fin_gate",), "sockops": ("sockops",),
             NOT_ENROLLED: ("recv", "fin_gate", "sockops")}  # fmt: skip
#: The pinned programs whose kernel run counts the hook-cost phase reports.
PROGRAMS = ("sockops", "sk_msg", "recv", "fin_gate")
SLOW_PORT, SLOW_RATE, SLOW_WRITE = 9200, 16 << 20, 1 << 20


def build_tool(name: str) -> str:
    """Compile bench/tools/NAME.c into the cache (outside the repo) when missing or changed."""
    src = HERE / "tools" / f"{name}.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = Path(DEFAULT_CACHE_DIR) / "bench" / f"{name}-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(out), str(src)], check=True)
    return str(out)


def pin_cpu0(pod: Pod) -> None:
    for proc in pod.processes:
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(proc.pid)], capture_output=True)
        for child in _children(proc.pid):
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(child)], capture_output=True)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    kids = [int(x) for x in out.split()]
    return kids + [g for k in kids for g in _children(k)]


def cpu_busy_seconds() -> float:
    """Busy CPU time of the whole machine (all CPUs), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.mabench = build_tool("mabench")
        self.hookcost = build_tool("hookcost")
        self.hook_samples: list[Sample] = []
        self.samples: list[Sample] = []
        self.sink = self.samples  # where add() puts samples (the overhead phase swaps it)
        self.overhead_samples: list[Sample] = []
        self.seconds = plan.seconds
        self.client_cpu = CLIENT_CPU
        self.hook_runs: dict[str, dict[str, dict[str, float]]] = {}
        self.errors: list[dict[str, object]] = []
        self.mounts = HostMounts.record()  # the agent mounts bpffs when the host has none
        self.lab = Lab()
        lab = self.lab
        self.agent = AgentProcess()
        try:
            self.a, self.b = lab.add_pod("a"), lab.add_pod("b")  # direct
            self.c, self.d = lab.add_pod("c"), lab.add_pod("d")  # sidecar path
            add_sidecar(self.c)
            add_sidecar(self.d)
            for pod in lab.pods.values():
                pod.sh("sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000")
            self.floor_path = f"/tmp/{lab.prefix}-floor.sock"
            lab.track_file(self.floor_path)
            for server in (self.b, self.d):
                server.spawn([self.mabench, "server", "tcp", server.ip, str(MABENCH_PORT)])
                server.spawn(["iperf3", "-s", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL)
                start_nginx(server, lab, {"index.html": b"x" * 100})
                start_redis(server)
            self.b.spawn([self.mabench, "server", "unix", self.floor_path])
            self.b.spawn([sys.executable, "-m", "meshaccel_lab.slow", "slowsink", "--port", str(SLOW_PORT),
                          "--rate", str(SLOW_RATE), "--fast-after", str(plan.slow_mib // 8 << 20)])  # fmt: skip
            for server in (self.b, self.d):
                wait_for(lambda s=server: f":{MABENCH_PORT} " in s.sh("ss", "-Hltn"), what="mabench")
            wait_for(lambda: os.path.exists(self.floor_path), what="floor server")
            pin_cpu0(self.b)
            pin_cpu0(self.c)
            pin_cpu0(self.d)
            self.agent.start()
            self.cgroup = find_cgroup2()
        except BaseException:
            self.close()  # leave no namespaces, processes or pins behind
            raise
        self.paths = {"direct": (self.a, self.b), "sidecar": (self.c, self.d)}
        self.enrolled = False

    def close(self) -> None:
        try:
            self.agent.close()
            self.lab.close()
        finally:
            self.mounts.restore()

    # -- configurations -------------------------------------------------

    def set_config(self, config: str) -> None:
        """kernel: no program of ours runs (sockops detached from the cgroup,
        the read tracepoint off); not enrolled: everything attached, no pod
        enrolled; accelerated: the pods enrolled."""
        pods = list(self.lab.pods.values())
        want_enrolled = config == ACCEL
        if self.enrolled != want_enrolled:
            (self.agent.enrol if want_enrolled else self.agent.unenrol)(pods)
            self.enrolled = want_enrolled
        self.attach(() if config == KERNEL else HOOK_SETS[NOT_ENROLLED])

    def attach(self, programs: tuple[str, ...]) -> None:
        """Attach exactly @programs of the current generation (sockhash
        enrolment unchanged)."""
        gen = PinRoot(DEFAULT_BPFFS).current()
        assert gen is not None
        for name, on, off in (
            ("recv", gen.attach_recv, gen.detach_recv),
            ("fin_gate", lambda: gen.attach_gate(self.cgroup), gen.detach_gate),
            ("sockops", lambda: gen.attach_sockops(self.cgroup), lambda: gen.detach_sockops(self.cgroup)),
        ):
            if name in programs:
                on()
            else:
                off()

    # -- workloads ------------------------------------------------------

    def add(self, path: str, workload: str, param: int, config: str, rep: int, **metrics: float) -> None:
        self.sink.append(Sample(path, workload, param, config, rep, metrics))

    def latency(self, path: str, config: str, rep: int, size: int, pinned: bool = True) -> None:
        client, server = self.paths["direct" if path.startswith("direct") else path]
        target = ["unix", self.floor_path] if config == FLOOR else ["tcp", server.ip, str(MABENCH_PORT)]
        cmd = [self.mabench, "latency", *target, str(size), str(self.seconds)]
        # Servers stay on CPU 0; an unpinned run puts the client on CPU 1.
        cmd = ["taskset", "-c", "0" if pinned else "1", *cmd]
        cpu0 = cpu_busy_seconds()
        out = json.loads(client.sh(*cmd))
        cpu = cpu_busy_seconds() - cpu0
        self.add(
            path,
            "latency",
            size,
            config,
            rep,
            p50_us=out["p50"],
            p90_us=out["p90"],
            p99_us=out["p99"],
            p999_us=out["p999"],
            cpu_us_per_txn=cpu * 1e6 / max(1, out["rounds_total"]),
        )

    def bulk(self, path: str, config: str, rep: int, size: int) -> None:
        client, server = self.paths[path]
        secs = str(max(1, int(self.seconds)))
        if config == FLOOR:
            out = json.loads(
                client.sh(*self.client_cpu, self.mabench, "throughput", "unix", self.floor_path, str(size), secs)
            )
            gbps = out["gbit_per_s"]
        else:
            args = ["-c", server.ip, "-p", str(IPERF_PORT), "-t", secs, "-l", str(size), "-J"]
            res = json.loads(client.sh(*self.client_cpu, "iperf3", *args, check=False))
            for _ in range(10):
                # The server still tears the previous test down: its own state,
                # not an error of the connection under test.
                if "busy running a test" not in str(res.get("error", "")):
                    break
                time.sleep(0.5)
                res = json.loads(client.sh(*self.client_cpu, "iperf3", *args, check=False))
            if res.get("error"):
                # Recorded, not fatal: an application-visible error is a
                # finding the report must show (README, benchmarks).
                self.errors.append(
                    {
                        "path": path,
                        "workload": "bulk",
                        "param": size,
                        "config": config,
                        "rep": rep,
                        "error": f"iperf3: {res['error']}",
                    }
                )
                return
            gbps = res["end"]["sum_received"]["bits_per_second"] / 1e9
        self.add(path, "bulk", size, config, rep, gbit_per_s=gbps)

    def tps(self, path: str, config: str, rep: int, conns: int) -> None:
        client, server = self.paths[path]
        threads = "1" if conns == 1 else "2"
        out = client.sh(
            *self.client_cpu,
            "wrk",
            f"-t{threads}",
            f"-c{conns}",
            f"-d{max(1, int(self.seconds))}s",
            f"http://{server.ip}:8080/index.html",
        )
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        if "Socket errors" in out or "Non-2xx" in out:
            raise RuntimeError(f"wrk reported errors:\n{out}")
        self.add(path, "tps", conns, config, rep, per_s=rate)

    def connrate(self, path: str, config: str, rep: int) -> None:
        client, server = self.paths[path]
        out = client.sh(
            *self.client_cpu,
            "redis-benchmark",
            "-h",
            server.ip,
            "-p",
            str(REDIS_PORT),
            "-k",
            "0",
            "-c",
            "8",
            "-n",
            str(self.plan.connections),
            "-t",
            "ping",
            "-q",
        )
        rate = float(re.search(r"PING_INLINE: ([\d.]+) requests per second", out).group(1))  # type: ignore[union-attr]
        self.add(path, "connrate", 1, config, rep, per_s=rate)

    def run_config(self, config: str, rep: int) -> None:
        print(f"  repetition {rep + 1}: {config}", flush=True)
        for path in ("direct", "sidecar"):
            for size in self.plan.latency_sizes:
                self.latency(path, config, rep, size)
            for size in self.plan.bulk_sizes:
                self.bulk(path, config, rep, size)
            for conns in (1, 32):
                self.tps(path, config, rep, conns)
            self.connrate(path, config, rep)
        self.latency("direct-xcpu", config, rep, 64, pinned=False)

    def run_cell(self, path: str, workload: str, param: int, config: str, rep: int) -> None:
        if workload == "latency":
            self.latency(path, config, rep, param)
        elif workload == "bulk":
            self.bulk(path, config, rep, param)
        elif workload == "tps":
            self.tps(path, config, rep, param)
        else:
            self.connrate(path, config, rep)

    def overhead(self) -> None:
        """Kernel vs not enrolled, pair by pair, cell by cell, on CPU 0."""
        self.sink, self.seconds = self.overhead_samples, self.plan.overhead_seconds
        self.client_cpu = SAME_CPU
        try:
            for path, workload, param in OVERHEAD_CELLS:
                print(f"  overhead: {path} {workload} {param}", flush=True)
                for rep in range(self.plan.overhead_pairs):
                    order = (KERNEL, NOT_ENROLLED) if rep % 2 == 0 else (NOT_ENROLLED, KERNEL)
                    for config in order:
                        self.set_config(config)
                        self.run_cell(path, workload, param, config, rep)
        finally:
            self.sink, self.seconds = self.samples, self.plan.seconds
            self.client_cpu = CLIENT_CPU

    def hook_cost(self) -> None:
        """The hooks' price per operation on CPU 0: one loopback write+read
        (the read tracepoint, the FIN gate on each segment) and one
        connection's life (the sockops callbacks, the gate), each averaged
        over many. Kernel, each program alone and all of them, in rotating
        order each repetition; then one run with the kernel's statistics on
        for how often each program ran per operation."""
        configs = [KERNEL, *HOOK_SETS]
        for op, count in HOOK_OPS.items():
            print(f"  hook cost: {op}", flush=True)
            cmd = (*SAME_CPU, self.hookcost, op, str(count))
            for rep in range(self.plan.overhead_pairs):
                for config in configs[rep % len(configs) :] + configs[: rep % len(configs)]:
                    self.attach(HOOK_SETS.get(config, ()))
                    ns = float(self.a.sh(*cmd))
                    self.hook_samples.append(Sample("loopback", op, count, config, rep, {"ns_per_op": ns}))
            self.attach(HOOK_SETS[NOT_ENROLLED])
            self.hook_runs[op] = self.program_runs(cmd, count)

    def program_runs(self, cmd: tuple[str, ...], ops: int) -> dict[str, dict[str, float]]:
        """Runs per operation and ns per run of each program while @cmd runs in pod a."""
        gen = PinRoot(DEFAULT_BPFFS).current()
        assert gen is not None
        fds = {name: gen.fd(name) for name in PROGRAMS}
        stats = sc.enable_run_stats()
        try:
            before = {name: sc.prog_run_stats(fd) for name, fd in fds.items()}
            self.a.sh(*cmd)
            after = {name: sc.prog_run_stats(fd) for name, fd in fds.items()}
        finally:
            os.close(stats)
            for fd in fds.values():
                os.close(fd)
        out = {}
        for name in PROGRAMS:
            ns, runs = (a - b for a, b in zip(after[name], before[name], strict=True))
            out[name] = {"runs_per_op": runs / ops, "ns_per_run": ns / runs if runs else 0.0}
        return out

    def slow_reader(self) -> dict[str, dict[str, float]]:
        """A flood into a slow, then fast, reader: kernel TCP vs accelerated."""
        out: dict[str, dict[str, float]] = {"meta": {"mib": float(self.plan.slow_mib)}}
        for config in (KERNEL, ACCEL):
            print(f"  slow reader: {config}", flush=True)
            self.set_config(config)
            with Sampler([self.a, self.b]) as mem:
                res = json.loads(
                    self.a.sh(*self.client_cpu, sys.executable, "-m", "meshaccel_lab.slow", "flood",
                              "--host", self.b.ip, "--port", str(SLOW_PORT), "--bytes", str(self.plan.slow_mib << 20),
                              "--chunk", str(SLOW_WRITE), check=False).strip().splitlines()[-1]
                )  # fmt: skip
            if not res["ok"]:
                self.errors.append({"path": "direct", "workload": "slow reader", "param": SLOW_WRITE,
                                    "config": config, "rep": 0, "error": f"flood: {res}"})  # fmt: skip
            out[config] = {
                "beyond_rcvbuf_bytes": float(max(0, mem.peak.over_rcvbuf)),
                "host_tcp_bytes": float(mem.peak.host_tcp_bytes),
                "late_gbit_per_s": float(res["late_gbit_per_s"]),
                "eagain": float(res["eagain"]),
                "errors": float(len(res["errors"]) + (0 if res["ok"] else 1)),
            }
        return out

    def run_floor(self, rep: int) -> None:
        print(f"  repetition {rep + 1}: {FLOOR}", flush=True)
        for size in self.plan.latency_sizes:
            self.latency("direct", FLOOR, rep, size)
        for size in self.plan.bulk_sizes:
            self.bulk("direct", FLOOR, rep, size)
        self.latency("direct-xcpu", FLOOR, rep, 64, pinned=False)

    # -- the agent's own cost ------------------------------------------

    def agent_cost(self) -> dict[str, float]:
        self.set_config(ACCEL)
        pid = self.agent.proc.pid if self.agent.proc else 0
        cost: dict[str, float] = {"rss_mib_idle": _rss_mib(pid)}
        t0, c0 = time.monotonic(), _cpu_seconds(pid)
        time.sleep(self.plan.idle_seconds)
        cost["idle_cpu_percent"] = 100 * (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        holder = self.b.spawn([sys.executable, "-c", _HOLD_SERVER, str(HOLD_PORT)])
        wait_for(lambda: f":{HOLD_PORT} " in self.b.sh("ss", "-Hltn"), what="holder")
        opener = self.a.spawn([sys.executable, "-c", _HOLD_CLIENT, self.b.ip, str(HOLD_PORT), "5100"])
        try:
            try:
                wait_for(lambda: self.agent.metric("meshaccel_sockets_enrolled") >= 10000, 60, "10k sockets")
            except TimeoutError:
                have = self.agent.metric("meshaccel_sockets_enrolled")
                raise RuntimeError(f"only {have} sockets enrolled; opener exit code {opener.poll()}") from None
            cost["sockets_enrolled"] = self.agent.metric("meshaccel_sockets_enrolled")
            t0, c0 = time.monotonic(), _cpu_seconds(pid)
            scrapes = []
            for _ in range(int(self.plan.idle_seconds)):
                s0 = time.monotonic()
                with urllib.request.urlopen(self.agent.url + "/metrics", timeout=30) as r:
                    r.read()
                scrapes.append(time.monotonic() - s0)
                time.sleep(max(0.0, 1 - (time.monotonic() - s0)))
            cost["cpu_percent_10k_sockets_1s_scrapes"] = 100 * (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)
            cost["scrape_ms_10k_sockets"] = 1000 * sorted(scrapes)[len(scrapes) // 2]
            cost["rss_mib_10k_sockets"] = _rss_mib(pid)
        finally:
            for proc in (opener, holder):
                proc.kill()
                proc.wait()
        # Start-up: a fresh install (compile + load + self-test + attach) and
        # an adopting restart, wall time from exec to /readyz.
        self.agent.stop()
        self.agent.cleanup(wait=30)
        for label in ("startup_install_s", "startup_adopt_s"):
            t0 = time.monotonic()
            self.agent.start()
            cost[label] = time.monotonic() - t0
            if label == "startup_install_s":
                cost["datapath_compile_load_s"] = self.agent.metric("meshaccel_datapath_load_seconds")
                self.agent.stop()
        return cost


_HOLD_SERVER = r"""
import asyncio, resource, sys
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
async def main():
    async def keep(r, w): held.append(w); await r.read()
    srv = await asyncio.start_server(keep, "0.0.0.0", int(sys.argv[1]), backlog=8192)
    await srv.serve_forever()
asyncio.run(main())
"""
_HOLD_CLIENT = r"""
import resource, socket, sys, time
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = [socket.create_connection((sys.argv[1], int(sys.argv[2]))) for _ in range(int(sys.argv[3]))]
time.sleep(600)
"""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _versions() -> dict[str, str]:
    def first(cmd: list[str]) -> str:
        res = subprocess.run(cmd, capture_output=True, text=True)
        return (res.stdout or res.stderr).strip().splitlines()[0] if (res.stdout or res.stderr).strip() else "?"

    return {
        "iperf3": first(["iperf3", "--version"]),
        "wrk": first(["wrk", "--version"]),
        "redis-benchmark": first(["redis-benchmark", "--version"]),
        "nginx": first(["nginx", "-v"]),
        "haproxy": first(["haproxy", "-v"]),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter runs (< 5 min)")
    parser.add_argument("--out", default=str(RESULTS), help="directory for latest.{json,md} and the plots")
    args = parser.parse_args(argv)
    plan = PLANS["quick" if args.quick else "full"]
    if os.geteuid() != 0:
        print("bench: run as root (network namespaces, BPF)", file=sys.stderr)
        return 2
    started = time.time()
    bench = Bench(plan)
    try:
        configs = [KERNEL, NOT_ENROLLED, ACCEL]
        for rep in range(plan.reps):
            order = configs[rep % 3 :] + configs[: rep % 3]  # rotate: no configuration always goes first
            for config in order:
                bench.set_config(config)
                bench.run_config(config, rep)
            bench.run_floor(rep)
        bench.overhead()
        bench.hook_cost()
        slow = bench.slow_reader()
        print("  agent cost", flush=True)
        agent = bench.agent_cost()
    finally:
        bench.close()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": f"{socket.gethostname().split('.')[0]} ({_cpu_model()})",
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "mode": plan.mode,
        "repetitions": plan.reps,
        "seconds_per_run": plan.seconds,
        "duration_s": round(time.time() - started, 1),
        "placement": "servers, latency clients and sidecar proxies on CPU 0, throughput clients on CPU 1; "
        "direct-xcpu crosses CPUs; the overhead and hook-cost phases run everything on CPU 0",
        "flow_bound": FlowControl().boundBytes,
        "slow_write": SLOW_WRITE,
        "tools": _versions(),
    }
    data = to_json(
        meta, bench.samples, agent, bench.errors, bench.overhead_samples, slow, bench.hook_samples, bench.hook_runs
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "latest.md").write_text(markdown(data))
    from bench.plots import plot

    plot(data, out)
    if out == RESULTS:
        from bench.readme import update

        update()
    print(markdown(data))
    print(f"wrote {out}/latest.json, latest.md, latency.png, throughput.png in {meta['duration_s']} s")
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    shutil.which("iperf3") or sys.exit("bench: iperf3 missing; run scripts/setup.sh")
    sys.exit(main())
