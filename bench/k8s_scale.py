"""`python -m bench.k8s_scale`: the operator on a 100-node, 10,000-pod cluster (objects only).

A real etcd + kube-apiserver (meshaccel_lab.kube), no kubelet: the benchmark
creates the Pod objects with spec.nodeName set and reports them Running
through the status subresource, as kubelets would. Phases:

  populate  nodes x pods-per-node pods (10% in a namespace that is not opted
            in, 10% without a sidecar), all Running with a unique IP, before
            the operator starts: its start is a cold start on a big cluster
  cold      start the operator; time until every NodeEnrolment holds exactly
            the expected pods, the writes it took, its memory
  churn     new pods turn Ready one at a time at a bounded rate; latency from
            the status patch to the pod in its node's object (seen through a
            watch), and the operator's own histogram
  delete    pods deleted one at a time (graceful: the pod turns Terminating,
            which is what a kubelet-less API server shows); time until they
            leave their node's object
  burst     many pods turn Ready at once: how writes coalesce under load
  idle      nothing changes but a few no-op events: operator writes and
            NodeEnrolment resourceVersion changes must both be 0

Every phase ends with a full listing of the NodeEnrolments compared with the
expectation computed here from what was created (not from the operator's
code), so a fast but wrong operator fails the run.

tests/k8s/test_scale.py runs the same phases at a small size and asserts
correctness only; the speed targets are checked here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import urllib3

from meshaccel_lab.kube import K8S_VERSION, KubeAPI
from meshaccel_lab.scale import IDLE_WRITES_TARGET, OPTED_IN_NAMESPACES, P99_TARGET_S, Plan, ScaleRun, Timer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    churn, idle = results["churn"], results["idle"]
    idle_writes = idle["node_writes"] + idle["resource_version_changes"]
    return [
        {"name": "churn: pod Ready -> in its node's object, p99 (s)", "value": churn["latency"]["p99_s"],
         "threshold": P99_TARGET_S, "direction": "<", "met": churn["latency"]["p99_s"] < P99_TARGET_S},
        {"name": "idle: NodeEnrolment writes + resourceVersion changes", "value": idle_writes,
         "threshold": IDLE_WRITES_TARGET, "direction": "==", "met": idle_writes == IDLE_WRITES_TARGET},
    ]  # fmt: skip


def _f(value: float, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _latency_row(name: str, phase: dict[str, Any]) -> str:
    lat, hist = phase["latency"], phase["operator_histogram"]
    return (
        f"| {name} | {lat['n']} | {_f(lat['p50_s'])} | {_f(lat['p90_s'])} | {_f(lat['p99_s'])} | {_f(lat['max_s'])} "
        f"| {_f(phase['pod_changes_per_s'], 1)} | {phase['writes']:.0f} ({_f(phase['writes_per_s'], 1)}/s) "
        f"| ≤{_f(hist['p50_le_s'], 3)} / ≤{_f(hist['p99_le_s'], 3)} |"
    )


def markdown(results: dict[str, Any]) -> str:
    meta, plan = results["meta"], results["plan"]
    pop, cold, idle = results["populate"], results["cold_start"], results["idle"]
    lines = [
        f"Run {meta['date']} on {meta['machine']} (kernel {meta['kernel']}, {meta['cpus']} CPUs), "
        f"kube-apiserver {meta['kubernetes']} + etcd on loopback, no kubelet; {meta['duration_s']:.0f} s in all; "
        f"load average {meta['loadavg_start'][0]:.1f} at the start, {meta['loadavg_end'][0]:.1f} at the end.",
        "",
        f"{plan['nodes']} nodes x {plan['pods_per_node']} pods = {pop['pods']} Pod objects ({pop['enrolled']} to "
        f"enrol; 10% in a namespace not opted in, 10% without a sidecar), {OPTED_IN_NAMESPACES} opted-in "
        f"namespaces, policy `default` with `spec: {{}}`, operator status interval {plan['status_interval']} s.",
        "",
        "| phase | figure |",
        "|---|---|",
        f"| populate (before the operator) | {pop['pods']} creates at {pop['create_per_s']:.0f}/s, "
        f"{pop['pods']} status patches at {pop['mark_running_per_s']:.0f}/s ({pop['threads']} client threads); "
        f"API server + etcd busy {pop['apiserver_etcd_busy_cores']:.2f} cores, client "
        f"{pop['client_busy_cores']:.2f} cores |",
        f"| cold start | /healthz after {cold['healthy_s']:.1f} s, first node object after "
        f"{cold['first_node_object_s']:.1f} s, all {cold['nodes']} exact after {cold['synced_s']:.1f} s; "
        f"{cold['writes']:.0f} writes ({cold['writes_2s_later']:.0f} 2 s later), "
        f"{cold['operator_cpu_s']:.1f} s operator CPU |",
        f"| operator memory | RSS {cold['rss_mib']:.0f} MiB after the cold start (peak {cold['hwm_mib']:.0f} MiB); "
        f"RSS {idle['rss_mib']:.0f} MiB at the end (peak {idle['hwm_mib']:.0f} MiB) |",
        f"| idle {idle['seconds']:.0f} s with {len(idle['noop_events'])} no-op events | "
        f"{idle['node_writes']:.0f} NodeEnrolment writes, {idle['resource_version_changes']} resourceVersion "
        f"changes, {idle['policy_status_writes']:.0f} policy status writes |",
        "",
        "Latency: from just before the status patch (or delete) to the watch event showing the pod in (or out "
        "of) its node's object, in seconds; operator histogram: bucket bounds holding p50 / p99 of its own "
        "first-event-to-written time.",
        "",
        "| phase | pods | p50 | p90 | p99 | max | pod changes/s | node writes | operator p50 / p99 |",
        "|---|---|---|---|---|---|---|---|---|",
        _latency_row("churn (Ready, one at a time)", results["churn"]),
        _latency_row("deletes (one at a time)", results["deletes"]),
        _latency_row("burst (Ready, all at once)", results["burst"]),
        "",
    ]
    for t in results["targets"]:
        verdict = "met" if t["met"] else "missed"
        lines.append(f"- {t['name']}: {_f(t['value'])} (target {t['direction']} {t['threshold']}): **{verdict}**")
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def run(plan: Plan) -> dict[str, Any]:
    started_wall, timer, load_start = time.time(), Timer(), list(os.getloadavg())
    results: dict[str, Any] = {"plan": asdict(plan)}
    with KubeAPI() as kube:
        scale = ScaleRun(kube, plan)
        try:
            scale.prepare()
            for phase, fn in (("populate", scale.populate), ("cold_start", scale.start_operator),
                              ("churn", scale.churn), ("deletes", scale.delete_some), ("burst", scale.burst),
                              ("idle", scale.idle)):  # fmt: skip
                print(f"  {phase} ...", flush=True)
                results[phase] = fn()
                print(f"  {phase}: {json.dumps(results[phase], default=str)[:400]}", flush=True)
            results["operator"] = scale.operator_summary()
            results["watch_errors"] = scale.watch.errors if scale.watch else []
        except BaseException:
            if scale.operator is not None:
                print(scale.operator.log()[-4000:], file=sys.stderr)
            raise
        finally:
            scale.close()
    results["targets"] = targets(results)
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started_wall)),
        "machine": f"{socket.gethostname().split('.')[0]} ({_cpu_model()})",
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kubernetes": K8S_VERSION,
        "duration_s": round(timer.seconds(), 1),
        # Anything else running on the machine shows here (the figures are CPU-bound).
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
    }
    return results


def main(argv: list[str] | None = None) -> int:
    defaults = Plan()
    parser = argparse.ArgumentParser(prog="python -m bench.k8s_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=defaults.nodes)
    parser.add_argument("--pods-per-node", type=int, default=defaults.pods_per_node)
    parser.add_argument("--churn", type=int, default=defaults.churn, help="pods turned Ready one at a time")
    parser.add_argument("--deletes", type=int, default=defaults.deletes, help="pods deleted one at a time")
    parser.add_argument("--burst", type=int, default=defaults.burst, help="pods turned Ready all at once")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="pod changes/s in churn and deletes")
    parser.add_argument("--idle", type=float, default=defaults.idle_seconds, help="seconds of idling")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="client threads creating pods")
    parser.add_argument("--status-interval", type=float, default=defaults.status_interval)
    parser.add_argument("--cold-timeout", type=float, default=defaults.cold_timeout, help="seconds for the cold start")
    parser.add_argument("--out", default=str(RESULTS / "k8s_scale.json"), help="JSON; the .md goes beside it")
    args = parser.parse_args(argv)
    # The test API server's certificate is self-signed (the kubeconfigs skip verification).
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    plan = Plan(nodes=args.nodes, pods_per_node=args.pods_per_node, churn=args.churn, deletes=args.deletes,
                burst=args.burst, rate=args.rate, idle_seconds=args.idle, threads=args.threads,
                status_interval=args.status_interval, cold_timeout=args.cold_timeout)  # fmt: skip
    results = run(plan)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    print(f"wrote {out} and {out.with_suffix('.md')} in {results['meta']['duration_s']} s")
    return 0 if all(t["met"] for t in results["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
