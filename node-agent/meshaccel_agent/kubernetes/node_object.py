"""The latest spec of this node's NodeEnrolment, kept by a list + watch.

A watch that expires or breaks is resumed or re-listed by the shared
ListWatch; the last spec seen stays in force meanwhile, so an unreachable
API server never un-enrols anything.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from kubernetes import client

from meshaccel_api.listwatch import ListWatch
from meshaccel_api.v1alpha1 import GROUP, VERSION, NodeEnrolment, NodeEnrolmentSpec


class NodeObjectWatch:
    def __init__(self, api: client.ApiClient, node: str) -> None:
        self.node = node
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._latest: tuple[int, NodeEnrolmentSpec] | None = None
        list_fn = functools.partial(
            client.CustomObjectsApi(api).list_cluster_custom_object,
            GROUP,
            VERSION,
            NodeEnrolment.plural,
            field_selector=f"metadata.name={node}",
        )
        self.listwatch = ListWatch(list_fn, self._on_list, self._on_event, name=f"nodeenrolment/{node}")

    @property
    def relists(self) -> int:
        return self.listwatch.lists

    def latest(self) -> tuple[int, NodeEnrolmentSpec] | None:
        """(generation, spec) of the object, or None before it exists."""
        with self._lock:
            return self._latest

    def start(self) -> None:
        self.listwatch.start()

    def stop(self) -> None:
        self.listwatch.stop()

    def _on_list(self, items: list[dict[str, Any]]) -> None:
        self._set(items[0] if items else None)

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        self._set(None if kind == "DELETED" else obj)

    def _set(self, obj: dict[str, Any] | None) -> None:
        value = None
        if obj is not None:
            value = (int(obj["metadata"].get("generation", 0)), NodeEnrolmentSpec.model_validate(obj.get("spec") or {}))
        with self._lock:
            if value != self._latest:
                self._latest = value
                self.changed.set()
