"""`meshaccel_build_info`: which component and version a target runs.

The Prometheus convention for build facts: a gauge of constant 1 whose
labels carry them, joined onto other series in queries (`* on(instance)
group_left(version) meshaccel_build_info`). Both the agent and the operator
export it, told apart by `component`.
"""

from __future__ import annotations

import importlib.metadata
import platform

from prometheus_client import CollectorRegistry, Info
from prometheus_client.registry import REGISTRY


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"  # run from a source tree without installing


def register_build_info(component: str, distribution: str, registry: CollectorRegistry = REGISTRY) -> Info:
    info = Info("meshaccel_build", "Component, version and Python of this process (value 1)", registry=registry)
    info.info({"component": component, "version": version_of(distribution), "python": platform.python_version()})
    return info
