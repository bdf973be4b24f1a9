"""Namespaces: their labels select pods (namespaceSelector)."""

from __future__ import annotations

from typing import Any

import kopf

from meshaccel_operator.handlers.runtime import indexes_of
from meshaccel_operator.handlers.view import mark_all_if_changed


@kopf.index("namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    return {name: dict(labels)}


@kopf.on.event("namespaces")
def namespace_event(name: str, type: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    mark_all_if_changed("namespace", name, type, dict(labels), indexes_of(kwargs))
