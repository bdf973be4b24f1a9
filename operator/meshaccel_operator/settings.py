"""The operator's settings: one model, its flags, their defaults."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from meshaccel_api.flags import Flag, add_flags, from_namespace, render


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "meshaccel-system"
    metrics_address: str = "0.0.0.0:9465"
    liveness_address: str = "0.0.0.0:8080"
    status_interval: float = 10.0
    lease: str = "meshaccel-operator"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


FLAGS: tuple[Flag, ...] = (
    Flag("--namespace", "namespace", "the operator's namespace (DaemonSets, Lease)", env="POD_NAMESPACE"),
    Flag("--metrics-address", "metrics_address", "HOST:PORT for /metrics"),
    Flag("--liveness-address", "liveness_address", "HOST:PORT for kopf's /healthz"),
    Flag("--status-interval", "status_interval", "seconds between policy status updates"),
    Flag("--lease", "lease", "name of the leader-election Lease"),
    Flag("--log-level", "log_level", "log level"),
)


def parse(argv: Sequence[str] | None = None, prog: str = "meshaccel-operator") -> OperatorSettings:
    p = argparse.ArgumentParser(prog=prog, description="The meshaccel operator (kopf).")
    add_flags(p, OperatorSettings, FLAGS)
    return from_namespace(OperatorSettings, FLAGS, p.parse_args(argv))


def to_args(settings: OperatorSettings) -> list[str]:
    return render(settings, FLAGS)
