"""Run the real node agent (standalone mode) for a lab, as a separate process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from meshaccel_lab.topology import Pod, stop_process, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshaccel_agent", *args]


def samples_by_name(text: str) -> dict[str, float]:
    """Prometheus text -> {"name{k=v,...}": value}, labels sorted."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


class AgentProcess:
    """`meshaccel-agent standalone` with a config file this object writes."""

    def __init__(self, log_path: str | None = None) -> None:
        self.port = _free_port()
        fd, path = tempfile.mkstemp(prefix="meshaccel-agent-", suffix=".yaml")
        os.close(fd)
        self.config_path = Path(path)
        self.log_path = Path(log_path or str(self.config_path.with_suffix(".log")))
        self._endpoints: dict[str, dict[str, object]] = {}
        self._write()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra_args: str, timeout: float = 60.0) -> None:
        self.spawn(*extra_args)
        assert self.proc is not None
        wait_for(self._ready_or_dead, timeout, "the agent to become ready")
        if self.proc.poll() is not None:
            raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")

    def _ready_or_dead(self) -> bool:
        return (self.proc is not None and self.proc.poll() is not None) or self.ready()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def spawn(self, *extra_args: str) -> subprocess.Popen[bytes]:
        """Start without waiting (crash-loop tests kill it mid-start)."""
        with open(self.log_path, "ab") as log:  # Popen keeps its own copy of the fd
            self.proc = subprocess.Popen(
                agent_command(
                    "standalone",
                    "--config",
                    str(self.config_path),
                    "--metrics-address",
                    f"127.0.0.1:{self.port}",
                    *extra_args,
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a node problem would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """SIGTERM: the agent exits and leaves the datapath attached."""
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
            self.proc = None

    def cleanup(self, wait: float = 10.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(agent_command("cleanup", "--wait", str(wait)), capture_output=True, text=True)

    def close(self) -> None:
        self.stop()
        self.cleanup()
        for p in (self.config_path,):
            p.unlink(missing_ok=True)

    # -- enrolment ----------------------------------------------------

    def enrol(
        self,
        pods: Iterable[Pod],
        excluded_ports: Iterable[int] = (),
        wait: bool = True,
        shapes: Iterable[str] = ("direct", "sidecar"),
    ) -> None:
        for pod in pods:
            self._endpoints[pod.netns] = {
                "name": pod.netns,
                "netns": pod.netns_path,
                "ips": [pod.ip],
                "excludedPorts": sorted(excluded_ports),
                "shapes": list(shapes),
            }
        self._apply(wait)

    def unenrol(self, pods: Iterable[Pod], wait: bool = True) -> None:
        for pod in pods:
            self._endpoints.pop(pod.netns, None)
        self._apply(wait)

    def write_raw_config(self, text: str) -> None:
        self.config_path.write_text(text)

    def _write(self) -> None:
        data = {"endpoints": list(self._endpoints.values())}
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data))
        os.replace(tmp, self.config_path)

    def _apply(self, wait: bool) -> None:
        before = self.metric("meshaccel_reconciles_total") if wait and self.proc is not None else 0.0
        self._write()
        if wait and self.proc is not None:
            want = len(self._endpoints)
            wait_for(
                lambda: (
                    self.metric("meshaccel_reconciles_total") > before
                    and self.metric("meshaccel_netns_enrolled") == want
                ),
                15,
                f"the agent to apply {want} endpoints",
            )

    # -- observation --------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """Samples by name, with labels folded in as name{k=v}."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            return samples_by_name(r.read().decode())

    def metric(self, name: str) -> float:
        return self.metrics().get(name, float("nan"))
