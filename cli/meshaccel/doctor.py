"""`meshaccel doctor`: can acceleration work on this node, and if not, what
to do. Runs where the agent runs (on a node as root, or `kubectl exec` into
the agent pod); exit code 1 when acceleration cannot work.

Each check reads one fact of the host (`Facts`, gathered once) and says
what is wrong and how to fix it; the checks themselves are pure, so every
verdict is unit-tested on hand-made facts (tests/unit/test_cli.py) and run
for real on this host by the datapath tier.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: The oldest kernel the datapath supports (sockhash redirect, sk_msg on
#: sockhash, BPF_SOCK_OPS_STATE_CB and the helpers bpf/ uses).
MIN_KERNEL = (5, 15)

#: Capabilities the agent needs, by number (linux/capability.h), with why.
CAPABILITIES = {
    39: ("BPF", "load programs, create and pin maps"),
    12: ("NET_ADMIN", "attach sock_ops/sk_msg programs, update sockhash maps"),
    21: ("SYS_ADMIN", "attach to the root cgroup, query its programs, enter pod network namespaces"),
    38: ("PERFMON", "BCC's loading checks"),
    19: ("SYS_PTRACE", "open /proc/PID/ns/net of other users' processes"),
}


@dataclass
class Facts:
    kernel: str = ""
    mounts: list[tuple[str, str, str]] = field(default_factory=list)  # (mount point, fstype, options)
    cap_eff: int = 0
    btf: bool = False
    headers: bool = False
    other_sockops: list[str] = field(default_factory=list)  # names of foreign programs on the cgroup2 root
    bpffs: str = "/sys/fs/bpf"
    cgroup2: str = ""  # where the agent attaches ("": none found)
    #: The running agent's self-test (check -> passed), from its /metrics;
    #: None when no agent answers there.
    selftest: dict[str, bool] | None = None


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    fatal: bool = True  # False: a warning; acceleration still works


def _kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def check_kernel(f: Facts) -> Finding:
    ok = _kernel_version(f.kernel) >= MIN_KERNEL
    want = ".".join(map(str, MIN_KERNEL))
    return Finding("kernel", ok, f"Linux {f.kernel}" + ("" if ok else f", older than {want}"),
                   "" if ok else f"run the node on Linux {want} or newer")  # fmt: skip


def check_cgroup2(f: Facts) -> Finding:
    if f.cgroup2:
        return Finding("cgroup2", True, f"mounted at {f.cgroup2}")
    return Finding("cgroup2", False, "no cgroup2 filesystem mounted",
                   "boot the node with cgroup v2 (systemd.unified_cgroup_hierarchy=1)")  # fmt: skip


def check_cgroup_v1_net(f: Facts) -> Finding:
    # Once a v1 net_cls or net_prio hierarchy is in use, the kernel stops
    # matching sockets to cgroup2 (cgroup_sk_alloc_disable(), "disabling
    # cgroup2 socket matching due to net_prio or net_cls activation"): cgroup
    # BPF programs then never see new sockets.
    v1 = [p for p, fs, opts in f.mounts if fs == "cgroup" and re.search(r"\bnet_(cls|prio)\b", opts)]
    if not v1:
        return Finding("cgroup v1 net_cls/net_prio", True, "not mounted")
    return Finding("cgroup v1 net_cls/net_prio", False, f"mounted at {', '.join(v1)}: once used, the kernel stops "
                   "matching sockets to cgroup2 and the sockops program sees no connection",
                   "remove the net_cls/net_prio v1 mounts (and their users) from the node")  # fmt: skip


def check_bpffs(f: Facts) -> Finding:
    if any(p == f.bpffs and fs == "bpf" for p, fs, _ in f.mounts):
        return Finding("bpffs", True, f"mounted at {f.bpffs}")
    return Finding("bpffs", False, f"no bpf filesystem at {f.bpffs}: pins (the datapath across agent restarts) "
                   "have nowhere to live", f"mount -t bpf bpf {f.bpffs} at boot (systemd does)")  # fmt: skip


def check_compile_inputs(f: Facts) -> Finding:
    if f.btf or f.headers:
        what = " and ".join(w for w, have in (("BTF", f.btf), ("kernel headers", f.headers)) if have)
        return Finding("BTF or headers", True, f"{what} available")
    return Finding("BTF or headers", False, "neither /sys/kernel/btf/vmlinux nor kernel headers",
                   "install the node's kernel headers, or use a kernel built with CONFIG_DEBUG_INFO_BTF")  # fmt: skip


def check_capabilities(f: Facts) -> Finding:
    missing = [f"CAP_{name} ({why})" for bit, (name, why) in CAPABILITIES.items() if not f.cap_eff >> bit & 1]
    if not missing:
        return Finding("capabilities", True, "all of " + ", ".join(n for n, _ in CAPABILITIES.values()))
    return Finding("capabilities", False, "missing " + "; ".join(missing),
                   "run as root, or give the agent container these capabilities (the chart does)")  # fmt: skip


def check_other_programs(f: Facts) -> Finding:
    if not f.other_sockops:
        return Finding("other sock_ops programs", True, "none on the cgroup2 root", fatal=False)
    return Finding("other sock_ops programs", False, f"{', '.join(f.other_sockops)} attached to the cgroup2 root: "
                   "they run beside meshaccel's (ALLOW_MULTI); another sockmap accelerator would pair the same "
                   "sockets", "run one socket accelerator per node (Cilium's sockops, Merbridge, ...)",
                   fatal=False)  # fmt: skip


def check_selftest(f: Facts) -> Finding:
    from meshaccel_agent.selftest.run import ESSENTIAL

    if f.selftest is None:
        return Finding("kernel self-test", False, "no agent answers on its metrics port, so no self-test result",
                       "start the agent (it self-tests at start), or pass --agent URL", fatal=False)  # fmt: skip
    failed = [c for c in ESSENTIAL if not f.selftest.get(c, False)]
    if not failed:
        return Finding("kernel self-test", True, f"the agent's checks pass: {', '.join(ESSENTIAL)}")
    return Finding("kernel self-test", False, f"the agent's check(s) {', '.join(failed)} fail on this kernel "
                   "(a missing feature or a known sockmap regression)",
                   "the agent's log gives each check's detail; move the node to a kernel that passes")  # fmt: skip


CHECKS: list[Callable[[Facts], Finding]] = [
    check_kernel, check_cgroup2, check_cgroup_v1_net, check_bpffs, check_compile_inputs, check_capabilities,
    check_other_programs, check_selftest,
]  # fmt: skip


def agent_selftest(url: str) -> dict[str, bool] | None:
    """meshaccel_selftest_passed{check} of the agent at @url (/metrics)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {
        s.labels["check"]: s.value == 1
        for family in text_string_to_metric_families(text)
        if family.name == "meshaccel_selftest_passed"
        for s in family.samples
    }


def gather(bpffs: str = "/sys/fs/bpf", agent: str = "http://127.0.0.1:9464/metrics", cgroup: str = "") -> Facts:
    """The facts of this host (root is needed for the program query);
    @cgroup is the agent's --cgroup (in the agent pod: the host's tree)."""
    from meshaccel_agent.kernel.host import resolve_cgroup2

    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            mounts.append((parts[1], parts[2], parts[3]))
    cap = next(ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapEff"))
    release = os.uname().release
    headers = Path(f"/lib/modules/{release}/build/include").is_dir() or bool(os.environ.get("MESHACCEL_HEADERS_DIR"))
    facts = Facts(kernel=release, mounts=mounts, cap_eff=int(cap, 16), btf=Path("/sys/kernel/btf/vmlinux").exists(),
                  headers=headers, bpffs=bpffs, selftest=agent_selftest(agent))  # fmt: skip
    try:
        facts.cgroup2 = resolve_cgroup2(cgroup) if cgroup else next(p for p, fs, _ in mounts if fs == "cgroup2")
    except (RuntimeError, StopIteration):
        facts.cgroup2 = ""
    if facts.cgroup2:
        facts.other_sockops = _foreign_sockops(facts.cgroup2)
    return facts


def _foreign_sockops(cgroup: str) -> list[str]:
    from meshaccel_agent.datapath.attach import SOCKOPS_KERNEL_NAME
    from meshaccel_agent.kernel import syscalls as sc

    names = []
    try:
        cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        for prog_id in sc.attached_prog_ids(cg, sc.BPF_CGROUP_SOCK_OPS):
            try:
                fd = sc.prog_fd_by_id(prog_id)
            except OSError:
                continue
            try:
                name = sc.prog_id_and_name(fd)[1]
            finally:
                os.close(fd)
            if name != SOCKOPS_KERNEL_NAME:
                names.append(f"{name or '(unnamed)'} (id {prog_id})")
    except OSError:
        return []  # no privilege to query: the capabilities check says so
    finally:
        os.close(cg)
    return names


def diagnose(facts: Facts) -> list[Finding]:
    return [check(facts) for check in CHECKS]


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        mark = "ok  " if f.ok else ("FAIL" if f.fatal else "warn")
        lines.append(f"[{mark}] {f.check}: {f.detail}")
        if f.fix and not f.ok:
            lines.append(f"       fix: {f.fix}")
    works = all(f.ok or not f.fatal for f in findings)
    lines.append("acceleration can work on this node" if works else "acceleration cannot work on this node")
    return "\n".join(lines)
