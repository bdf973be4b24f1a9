"""The agent's main loop, shared by standalone and Kubernetes mode.

A mode supplies only where the desired enrolment comes from (`tick`) and what
happens at shutdown (`stopping`); bring-up, reconcile, health and metrics are
the same in both.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from meshaccel_agent import doctor
from meshaccel_agent.bringup import DatapathHealth, bring_up
from meshaccel_agent.datapath.datapath import Datapath
from meshaccel_agent.datapath.enrolment import DesiredNetns
from meshaccel_agent.http import AgentHTTPServer
from meshaccel_agent.metrics import DatapathCollector, DatapathSnapshot
from meshaccel_api.agent_settings import AgentSettings
from meshaccel_api.buildinfo import register_build_info

log = logging.getLogger(__name__)


@dataclass
class AgentState:
    """What /readyz and the metrics report; written by the reconcile loop."""

    last_reconcile_ok: bool = False
    last_error: str = ""
    endpoints: int = 0
    refused: int = 0
    applied: int = 0
    config_errors: int = 0


class AgentRunner:
    def __init__(self, datapath: Datapath, settings: AgentSettings, poll_seconds: float = 1.0) -> None:
        self.datapath = datapath
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.ignore_selftest = settings.ignore_selftest
        self.liveness_timeout = settings.liveness_timeout
        self.health = DatapathHealth()
        self._heartbeat = time.monotonic()
        self.state = AgentState()
        self._stop = threading.Event()
        self.registry = CollectorRegistry()
        self.registry.register(DatapathCollector(self.snapshot))
        register_build_info("agent", "meshaccel-agent", self.registry)
        self.http = AgentHTTPServer(settings.metrics_address, self.registry, self.healthy, self.ready, self.doctor)

    # -- what a mode provides ------------------------------------------------

    def tick(self, count: int) -> None:
        """Called every poll interval while the datapath is attached."""

    def idle_tick(self) -> None:
        """Called every poll interval while degraded (nothing attached)."""

    def on_degraded(self) -> None:
        """Called once when bring-up ended degraded (after it was logged)."""

    def stopping(self) -> None:
        """Called once after the loop ends (SIGTERM)."""
        log.info("stopping; the datapath stays attached (run `meshaccel-agent cleanup` to uninstall)")

    # -- shared ---------------------------------------------------------------

    def snapshot(self) -> DatapathSnapshot:
        snap = DatapathSnapshot(
            attached=self.health.attached,
            endpoints=self.state.endpoints,
            endpoints_refused=self.state.refused,
            reconciles=self.state.applied,
            config_errors=self.state.config_errors,
            degraded_reason=self.health.degraded_reason,
            selftest=dict(self.health.selftest.passed),
            overridden=self.health.overridden,
        )
        if self.datapath.pins.current() is not None:
            snap.sockets = sum(1 for _ in self.datapath.enrolled_sockets())
            snap.counters = self.datapath.counters()
            snap.load_seconds = self.datapath.load_seconds
        return snap

    def healthy(self) -> tuple[bool, str]:
        # Fails only when the main loop stopped making progress.
        stalled = time.monotonic() - self._heartbeat
        if stalled > self.liveness_timeout:
            return False, f"main loop stalled for {stalled:.0f}s"
        return True, "ok"

    def ready(self, allow_degraded: bool = False) -> tuple[bool, str]:
        """Accelerating: attached and the last reconcile applied. With
        @allow_degraded (the DaemonSet's readiness probe) a settled degraded
        agent is ready too: it has decided to leave its node on plain TCP."""
        if self.health.degraded_reason:
            degraded = f"degraded: {self.health.degraded_reason}: {self.health.message}"
            return allow_degraded, degraded + (" (failing open to kernel TCP)" if allow_degraded else "")
        if not self.health.attached:
            return False, "datapath not attached"
        if not self.state.last_reconcile_ok:
            return False, f"last reconcile failed: {self.state.last_error or 'not yet run'}"
        return True, "ok"

    def doctor(self) -> dict[str, Any]:
        """GET /doctor: this node's checks, with the self-test this agent ran."""
        report = self.health.selftest
        facts = doctor.gather(self.settings.bpffs, self.settings.cgroup or "", dict(report.passed) or None)
        facts.selftest_details = dict(report.details)
        findings = doctor.diagnose(facts)
        node = self.settings.node_name or os.uname().nodename
        return {"node": node, "canAccelerate": doctor.can_accelerate(findings),
                "findings": [asdict(f) for f in findings]}  # fmt: skip

    def apply(self, desired: list[DesiredNetns]) -> bool:
        """Reconcile the maps to @desired; False (and logged) on failure."""
        try:
            result = self.datapath.reconcile(desired)
        except OSError as exc:
            self.state.last_reconcile_ok = False
            self.state.last_error = str(exc)
            log.error("reconcile failed: %s", exc)
            return False
        self.state.last_reconcile_ok = True
        self.state.last_error = ""
        self.state.applied += 1
        self.state.endpoints = len(desired) - result.refused
        self.state.refused = result.refused
        if result.refused:
            log.warning("%d endpoint(s) not enrolled: an enrolment map is full (raise its size)", result.refused)
        log.log(
            logging.INFO if result.added or result.removed else logging.DEBUG,
            "enrolment applied: %d endpoint(s), %d map entries added, %d removed",
            len(desired),
            result.added,
            result.removed,
        )
        return True

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.http.start()
        log.info("serving /metrics /healthz /readyz on port %d", self.http.port)
        self.health = bring_up(self.datapath, self.ignore_selftest)
        if self.health.degraded_reason:
            self.on_degraded()
        ticks = 0
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()
            if self.health.attached:
                self.tick(ticks)
            else:
                self.idle_tick()
            ticks += 1
            if ticks % 10 == 0:
                if self.datapath.pins.current() is not None:
                    self.datapath.housekeeping()
                if self.health.overridden:
                    log.warning("running with a FAILED kernel self-test (--ignore-selftest)")
            self._stop.wait(self.poll_seconds)
        self.stopping()
        self.http.stop()
