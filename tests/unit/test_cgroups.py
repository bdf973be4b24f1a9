"""Where the self-test's private cgroup goes: the agent's own cgroup when
known (a pod's container cgroup), the cgroup2 root otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshaccel_agent.kernel.cgroups import own_cgroup, pod_cgroup_candidates, selftest_parents


def test_own_cgroup_under_a_hostpath_view_of_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "host-cgroup2"
    (root / "kubepods/burstable/pod1/abc").mkdir(parents=True)
    proc = tmp_path / "cgroup"
    proc.write_text("12:cpu:/kubepods/burstable/pod1/abc\n0::/kubepods/burstable/pod1/abc\n")
    assert own_cgroup(str(root), str(proc)) == str(root / "kubepods/burstable/pod1/abc")


def test_unknown_inside_a_private_cgroup_namespace(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/\n")
    assert own_cgroup(str(tmp_path), str(proc)) is None
    proc.write_text("0::/somewhere/else\n")
    assert own_cgroup(str(tmp_path), str(proc)) is None, "a path not under this view of the tree"


def test_the_root_is_always_the_last_resort(tmp_path: Path) -> None:
    assert selftest_parents(str(tmp_path))[-1] == str(tmp_path)


def test_own_cgroup_inside_a_private_namespace_found_through_the_pod(tmp_path: Path) -> None:
    """kind and most cgroup2 runtimes: "0::/", the pod's UID from the downward
    API, our PID in one container's cgroup.procs."""
    pod = tmp_path / "kubepods/besteffort/pod1-2"
    (pod / "other").mkdir(parents=True)
    (pod / "other/cgroup.procs").write_text("0\n")
    (pod / "agent").mkdir()
    (pod / "agent/cgroup.procs").write_text(f"{os.getpid()}\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/\n")
    assert own_cgroup(str(tmp_path), str(proc), pod_uid="1-2") == str(pod / "agent")
    assert own_cgroup(str(tmp_path), str(proc), pod_uid="3-4") is None


@pytest.mark.parametrize(
    "relative",
    [
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda_b.slice",  # systemd driver
        "kubepods/besteffort/poda-b",  # cgroupfs driver (this machine's e2e node)
        "kubepods/poda-b",  # Guaranteed QoS
        # kind: systemd driver under --cgroup-root=/kubelet
        "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-poda_b.slice",
        "kubelet/kubepods/burstable/poda-b",
    ],
)
def test_pod_cgroup_names_of_every_driver_and_cgroup_root(relative: str) -> None:
    assert Path("/cg") / relative in pod_cgroup_candidates(Path("/cg"), "a-b")
