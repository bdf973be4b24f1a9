"""Standalone mode: enrolment from a YAML file, for hosts without Kubernetes.

The file is re-read when its modification time or size changes. A file that
fails validation is reported in one log line and leaves the last good
enrolment in place.
"""

from __future__ import annotations

import logging
import os

from meshaccel_agent.datapath.datapath import Datapath
from meshaccel_agent.datapath.enrolment import DesiredNetns
from meshaccel_agent.kernel.netns import netns_cookie
from meshaccel_agent.runner import AgentRunner, AgentState
from meshaccel_agent.standalone.config import ConfigError, EnrolmentConfig, load_config
from meshaccel_api.agent_settings import AgentSettings

log = logging.getLogger(__name__)

__all__ = ["AgentState", "StandaloneAgent", "resolve"]


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
        desired.append(
            DesiredNetns(
                cookie,
                frozenset(ep.ips),
                frozenset(ep.excluded_ports),
                sidecar="sidecar" in ep.shapes,
                direct="direct" in ep.shapes,
            )
        )
    cookies = [d.cookie for d in desired]
    if len(set(cookies)) != len(cookies):
        raise ConfigError("two endpoints name the same network namespace")
    return desired, problems


class StandaloneAgent(AgentRunner):
    def __init__(self, datapath: Datapath, settings: AgentSettings, config_path: str) -> None:
        super().__init__(datapath, settings)
        self.config_path = config_path
        self._stamp: tuple[int, int, int] | None = None

    def tick(self, count: int) -> None:
        if count % 10 == 9:
            self._stamp = None  # a missing netns may appear later (pod started): retry
        self.reload_if_changed()

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
        self.apply(desired)
