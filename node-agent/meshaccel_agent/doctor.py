"""Can acceleration work on this node, and if not, what to do: the checks
behind `meshaccel doctor`. They run where the agent runs: on a node as root,
`kubectl exec` in the agent pod, or inside the running agent, which answers
them on GET /doctor (so `meshaccel doctor --cluster` can ask every node
through the API server).

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
    selftest_details: dict[str, str] = field(default_factory=dict)  # check -> why it failed


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    fatal: bool = True  # False: a warning; acceleration still works


def _release(release: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a kernel release string; (0, 0, 0) if unreadable."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else (0, 0, 0)


def check_kernel(f: Facts) -> Finding:
    ok = _release(f.kernel)[:2] >= MIN_KERNEL
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
        return Finding("kernel self-test", False, "no self-test result: no agent answers on its metrics port, "
                       "or it has not run one",
                       "start the agent (it self-tests at start), or pass --agent URL", fatal=False)  # fmt: skip
    failed = [c for c in ESSENTIAL if not f.selftest.get(c, False)]
    if not failed:
        return Finding("kernel self-test", True, f"the agent's checks pass: {', '.join(ESSENTIAL)}")
    why = "".join(f"; {c}: {f.selftest_details[c]}" for c in failed if f.selftest_details.get(c))
    return Finding("kernel self-test", False, f"the agent's check(s) {', '.join(failed)} fail on this kernel "
                   f"(a missing feature or a known sockmap regression){why}",
                   "the agent's log gives each check's detail; move the node to a kernel that passes")  # fmt: skip


@dataclass(frozen=True)
class Regression:
    """A kernel change that broke sockmap sockets, and what meshaccel does
    about it. @ranges are the [first, end) releases that carry it (end None:
    every later one). @probe, when set, is the informational self-test
    check that measures exactly this behaviour: its result outranks the
    version, since distributions backport without changing the release."""

    ref: str
    ranges: tuple[tuple[tuple[int, int, int], tuple[int, int, int] | None], ...]
    effect: str
    containment: str
    probe: str = ""


#: Known sockmap regressions. The versions are those the threads named in
#: each @ref bisected or reported; add a row when a new one is found.
KNOWN_REGRESSIONS = (
    Regression(
        ref="kernel commit 929e30f93125 (grafana/beyla#3025)",
        ranges=(((6, 6, 128), (6, 7, 0)), ((6, 12, 75), (6, 13, 0)), ((6, 18, 14), (6, 19, 0)), ((6, 19, 0), None)),
        effect="FIONREAD of a sockhash socket counts only redirected bytes, and epoll read wake-ups can be "
        "lost on one that receives through the stack",
        containment="meshaccel enrols both ends of a connection or neither, so only a direction that flow "
        "control sends through the stack meets it (epoll readers there are tested); FIONREAD under-reports "
        "until the redirected part is read",
        probe="stack_fionread",
    ),
    Regression(
        ref="grafana/beyla#2941 (seen on 6.12.79, not on 6.12.73; not bisected)",
        ranges=(((6, 12, 79), (6, 13, 0)),),
        effect="lost EPOLLOUT wake-ups: 20-80 s send stalls on sockets with an sk_msg program",
        containment="the self-test's large_write and epoll_wakeup checks run that shape on this kernel and "
        "keep acceleration off when it stalls",
    ),
)


def carries(f: Facts, r: Regression) -> bool:
    measured = (f.selftest or {}).get(r.probe) if r.probe else None
    if measured is not None:
        return not measured
    v = _release(f.kernel)
    return any(first <= v and (end is None or v < end) for first, end in r.ranges)


def check_known_regressions(f: Facts) -> Finding:
    name = "known sockmap regressions"
    hits = [r for r in KNOWN_REGRESSIONS if carries(f, r)]
    if not hits:
        major, minor, patch = _release(f.kernel)
        # Debian's "6.1.0-26-amd64" hides the stable patch level.
        unsure = "" if re.match(r"\d+\.\d+\.[1-9]", f.kernel) else " (the release names no stable patch level)"
        return Finding(name, True, f"none known for Linux {major}.{minor}.{patch}{unsure}", fatal=False)
    detail = " ".join(f"{r.ref}: {r.effect}. Contained: {r.containment}." for r in hits)
    return Finding(name, False, f"Linux {f.kernel} carries {detail}",
                   "nothing to do for event-loop and plain readers; a reader that sizes its reads by FIONREAD "
                   "belongs in excludedPorts (README, Limitations)", fatal=False)  # fmt: skip


CHECKS: list[Callable[[Facts], Finding]] = [
    check_kernel, check_cgroup2, check_cgroup_v1_net, check_bpffs, check_compile_inputs, check_capabilities,
    check_other_programs, check_known_regressions, check_selftest,
]  # fmt: skip


def gather(bpffs: str = "/sys/fs/bpf", cgroup: str = "", selftest: dict[str, bool] | None = None) -> Facts:
    """The facts of this host (root is needed for the program query);
    @cgroup is the agent's --cgroup (in the agent pod: the host's tree),
    @selftest the running agent's self-test result (None: no agent)."""
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
                  headers=headers, bpffs=bpffs, selftest=selftest)  # fmt: skip
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


def can_accelerate(findings: list[Finding]) -> bool:
    return all(f.ok or not f.fatal for f in findings)
