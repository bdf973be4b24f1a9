"""What a kubelet leaves on a node that the agent relies on: one cgroup per
pod, named after the pod's UID, holding processes that live in the pod's
network namespace. The lab creates exactly that (systemd-driver layout) under
a private cgroup2 directory, with a sleeper as the pod's "sandbox" process."""

from __future__ import annotations

import errno
import os
import secrets
import subprocess
import time
from pathlib import Path

from meshaccel_agent.kernel.host import find_cgroup2
from meshaccel_lab.topology import Pod, stop_process


class FakeKubelet:
    def __init__(self) -> None:
        self.root = Path(find_cgroup2()) / f"meshaccel-kubelet-{secrets.token_hex(3)}"
        self.qos = self.root / "kubepods.slice" / "kubepods-besteffort.slice"
        self.qos.mkdir(parents=True)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._dirs: list[Path] = []

    def run_pod(self, pod: Pod, uid: str) -> subprocess.Popen[bytes]:
        """Start the sandbox of API pod @uid inside lab pod @pod's namespace."""
        cgroup = self.qos / f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
        sandbox = cgroup / "cri-containerd-sandbox.scope"
        sandbox.mkdir(parents=True, exist_ok=True)
        self._dirs += [sandbox, cgroup]
        proc = subprocess.Popen(["ip", "netns", "exec", pod.netns, "sleep", "infinity"], start_new_session=True)
        self._procs.append(proc)
        # `ip netns exec` execs sleep in place: the PID is the sleeper's.
        (sandbox / "cgroup.procs").write_text(str(proc.pid))
        return proc

    def close(self) -> None:
        for proc in self._procs:
            stop_process(proc)
        self._procs.clear()
        for d in [*self._dirs, self.qos, self.qos.parent, self.root]:
            # A cgroup can be removed once empty; the kernel may need a moment
            # after the last process was reaped.
            for _ in range(50):
                try:
                    if d.exists():
                        os.rmdir(d)
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.1)
        self._dirs.clear()
