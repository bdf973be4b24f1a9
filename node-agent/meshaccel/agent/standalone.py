"""Standalone mode: enrolment from a YAML file, for hosts without Kubernetes.

The file is re-read when its modification time or size changes. A file that
fails validation is reported in one log line and leaves the last good
enrolment in place.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from meshaccel.agent.bringup import DatapathHealth, bring_up
from meshaccel.agent.datapath import Datapath, DesiredNetns
from meshaccel.agent.http import AgentHTTPServer
from meshaccel.agent.metrics import DatapathCollector, DatapathSnapshot
from meshaccel.agent.netns import netns_cookie
from meshaccel.config import ConfigError, EnrolmentConfig, load_config

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


def resolve(config: EnrolmentConfig) -> tuple[list[DesiredNetns], list[str]]:
    """Turn the config into map contents; endpoints whose netns is gone are skipped."""
    desired: list[DesiredNetns] = []
    problems: list[str] = []
    for ep in config.endpoints:
        try:
            cookie = netns_cookie(ep.netns)
        except OSError as exc:
            problems.append(f"endpoint {ep.name!r}: {exc}")
            continue
        desired.append(DesiredNetns(cookie, frozenset(ep.ips), frozenset(ep.excluded_ports)))
    cookies = [d.cookie for d in desired]
    if len(set(cookies)) != len(cookies):
        raise ConfigError("two endpoints name the same network namespace")
    return desired, problems


class StandaloneAgent:
    def __init__(
        self,
        datapath: Datapath,
        config_path: str,
        metrics_address: str,
        poll_seconds: float = 1.0,
        ignore_selftest: bool = False,
        liveness_timeout: float = 60.0,
    ) -> None:
        self.datapath = datapath
        self.config_path = config_path
        self.poll_seconds = poll_seconds
        self.ignore_selftest = ignore_selftest
        self.liveness_timeout = liveness_timeout
        self.health = DatapathHealth()
        self._heartbeat = time.monotonic()
        self.state = AgentState()
        self._stop = threading.Event()
        self._stamp: tuple[int, int, int] | None = None
        registry = CollectorRegistry()
        registry.register(DatapathCollector(self.snapshot))
        self.http = AgentHTTPServer(metrics_address, registry, self.healthy, self.ready)

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

    def ready(self) -> tuple[bool, str]:
        if self.health.degraded_reason:
            return False, f"degraded: {self.health.degraded_reason}: {self.health.message}"
        if not self.health.attached:
            return False, "datapath not attached"
        if not self.state.last_reconcile_ok:
            return False, f"last reconcile failed: {self.state.last_error or 'not yet run'}"
        return True, "ok"

    def reload_if_changed(self) -> None:
        try:
            st = os.stat(self.config_path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return
        self._stamp = stamp
        self.apply_file()

    def apply_file(self) -> None:
        try:
            config = load_config(self.config_path)
            desired, problems = resolve(config)
        except ConfigError as exc:
            self.state.config_errors += 1
            if not self.state.last_reconcile_ok and self.state.endpoints == 0:
                self.state.last_error = str(exc)
            log.error("config rejected, keeping the last good enrolment: %s", exc)
            return
        for p in problems:
            log.warning("%s; skipped", p)
        try:
            result = self.datapath.reconcile(desired)
        except OSError as exc:
            self.state.last_reconcile_ok = False
            self.state.last_error = str(exc)
            log.error("reconcile failed: %s", exc)
            return
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

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.http.start()
        log.info("serving /metrics /healthz /readyz on port %d", self.http.port)
        self.health = bring_up(self.datapath, self.ignore_selftest)
        ticks = 0
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()
            if self.health.attached:
                self.reload_if_changed()
            ticks += 1
            if ticks % 10 == 0:
                # A missing netns may appear later (pod started): retry.
                self._stamp = None
                if self.datapath.pins.current() is not None:
                    self.datapath.housekeeping()
                if self.health.overridden:
                    log.warning("running with a FAILED kernel self-test (--ignore-selftest)")
            self._stop.wait(self.poll_seconds)
        self.http.stop()
        log.info("stopping; the datapath stays attached (run `meshaccel agent --cleanup` to uninstall)")
