"""What the cluster changes on the host, recorded by `up` and undone by `down`.

A kubelet and kube-proxy change more of a host than they document: sysctls
(kubelet sets kernel.panic, kernel.panic_on_oops, vm.overcommit_memory and
the keyring limits; kube-proxy route_localnet and conntrack limits), iptables
chains in several tables, a bridge and veths, network namespaces and mounts.
Rather than list what each version touches, `up` records the host (every
writable sysctl, every iptables table, the links and namespaces that exist)
and `down` puts back what differs, then reports anything it could not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

SYSCTL = Path("/proc/sys")
#: Folders a kubelet, containerd or CNI create at fixed places whatever they
#: are configured with (device plugins, runc state and shim sockets, CNI's
#: result cache, container log links): down removes those that up did not find.
FIXED_PATHS = ("/var/lib/kubelet", "/run/containerd", "/var/lib/cni", "/var/log/containers", "/var/log/pods",
               "/etc/cni", "/opt/cni", "/var/lib/containerd")  # fmt: skip
#: Sysctls that change by themselves, or per interface/namespace we create.
_VOLATILE = ("kernel/ns_last_pid", "kernel/random/", "net/ipv4/conf/", "net/ipv6/conf/", "net/ipv4/neigh/",
             "net/ipv6/neigh/", "fs/", "kernel/sched_", "kernel/perf_event_max_sample_rate", "vm/drop_caches",
             "vm/compact_memory", "net/netfilter/nf_conntrack_count", "kernel/tainted")  # fmt: skip
#: ... except the interface-wide defaults, which kube-proxy does change.
_KEEP = ("net/ipv4/conf/all/", "net/ipv4/conf/default/", "net/ipv6/conf/all/", "net/ipv6/conf/default/")


BPFFS = "/sys/fs/bpf"
NETNS_DIR = "/run/netns"  # where `ip netns` and containerd name network namespaces


def bpffs_mounted() -> bool:
    return any(line.split()[1:3] == [BPFFS, "bpf"] for line in Path("/proc/mounts").read_text().splitlines())


def netns_dir_mounted() -> bool:
    """/run/netns is a mount point (`ip netns add` binds it onto itself)."""
    return any(line.split()[1] == NETNS_DIR for line in Path("/proc/mounts").read_text().splitlines())


def _tracked(rel: str) -> bool:
    return rel.startswith(_KEEP) or not rel.startswith(_VOLATILE)


def read_sysctls() -> dict[str, str]:
    values = {}
    for dirpath, _dirs, files in os.walk(SYSCTL):
        for name in files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(SYSCTL))
            if not _tracked(rel) or not os.access(path, os.W_OK) or not os.access(path, os.R_OK):
                continue
            try:
                values[rel] = path.read_text()
            except OSError:
                continue  # write-only or not readable in this state
    return values


def _save(cmd: str) -> str:
    res = subprocess.run([cmd], capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else ""


def _names(cmd: list[str]) -> list[str]:
    return sorted(subprocess.run(cmd, capture_output=True, text=True).stdout.split())


def links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line)


def netns() -> list[str]:
    path = Path(NETNS_DIR)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def tables(saved: str) -> set[str]:
    return {line[1:].strip() for line in saved.splitlines() if line.startswith("*")}


@dataclass
class HostState:
    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: str = ""
    ip6tables: str = ""
    links: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # of FIXED_PATHS
    bpffs: bool = True  # a bpffs was mounted at BPFFS
    netns_dir: bool = True  # /run/netns was a mount point

    @classmethod
    def record(cls) -> HostState:
        absent = [p for p in FIXED_PATHS if not os.path.lexists(p)]
        return cls(read_sysctls(), _save("iptables-save"), _save("ip6tables-save"), links(), netns(), absent,
                   bpffs_mounted(), netns_dir_mounted())  # fmt: skip

    def remove_created_paths(self) -> None:
        for path in self.absent:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> HostState:
        return cls(**json.loads(path.read_text()))

    # -- undo ------------------------------------------------------------------

    def restore_iptables(self) -> None:
        for saver, restorer, before in (("iptables-save", "iptables-restore", self.iptables),
                                        ("ip6tables-save", "ip6tables-restore", self.ip6tables)):  # fmt: skip
            now = _save(saver)
            # Tables that did not exist before: empty them (nft keeps the table).
            for table in tables(now) - tables(before):
                subprocess.run([saver.replace("-save", ""), "-t", table, "-F"], capture_output=True)
                subprocess.run([saver.replace("-save", ""), "-t", table, "-X"], capture_output=True)
            if before:
                subprocess.run([restorer], input=before, text=True, check=True, capture_output=True)

    def restore_sysctls(self) -> list[str]:
        """Put back every recorded sysctl that differs; returns those that failed."""
        failed = []
        for rel, value in self.sysctls.items():
            path = SYSCTL / rel
            try:
                if path.read_text() != value:
                    path.write_text(value)
            except OSError:
                failed.append(rel)
        return failed

    # -- check -----------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """What still differs from the recorded host (empty: as found)."""
        problems = []
        now = read_sysctls()
        problems += [f"sysctl {k}: {self.sysctls[k].strip()} -> {now[k].strip()}"
                     for k in self.sysctls if k in now and now[k] != self.sysctls[k]]  # fmt: skip
        for saver, before in (("iptables-save", self.iptables), ("ip6tables-save", self.ip6tables)):
            extra = _rules(_save(saver)) - _rules(before)
            problems += [f"{saver.split('-')[0]} {rule}" for rule in sorted(extra)]
        problems += [f"link {name}" for name in sorted(set(links()) - set(self.links))]
        problems += [f"netns {name}" for name in sorted(set(netns()) - set(self.netns))]
        problems += [f"path {p}" for p in self.absent if os.path.lexists(p)]
        if not self.bpffs and bpffs_mounted():
            problems.append(f"bpffs mounted at {BPFFS}")
        return problems


def _rules(saved: str) -> set[str]:
    """Chains and rules per table, without packet counters."""
    out, table = set(), ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":") and line.split()[1] == "-":
            # A user chain (built-in ones show a policy and exist with the table).
            out.add(f"-t {table} chain {line.split()[0][1:]}")
        elif line.startswith("-A"):
            out.add(f"-t {table} {line}")
    return out
