"""What the handlers share: settings, the API client, the writer, the pod
index, the leader elector's verdict, and read-only views of kopf's indexes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshaccel_api.v1alpha1 import AccelerationPolicySpec
from meshaccel_operator.podindex import PodIndex
from meshaccel_operator.settings import OperatorSettings
from meshaccel_operator.writer import NodeWriter

INDEXES = ("namespace_labels", "policies", "node_enrolments")


@dataclass
class Runtime:
    """Filled by `meshaccel-operator` and the startup handler."""

    settings: OperatorSettings = field(default_factory=OperatorSettings)
    debounce: float = 0.05
    api: Any = None
    writer: NodeWriter | None = None
    indexes: dict[str, Any] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pods: PodIndex | None = None
    may_write: Callable[[], bool] = lambda: True  # the leader elector's holds()
    seen: dict[tuple[str, str], Any] = field(default_factory=dict)  # last labels/spec per namespace/policy

    def require_writer(self) -> NodeWriter:
        assert self.writer is not None, "the startup handler has not run"
        return self.writer


RUNTIME = Runtime()


def indexes_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    """kopf passes every index to every handler as a keyword argument."""
    return {k: kwargs[k] for k in INDEXES}


class Unique(Mapping[str, Any]):
    """A read-only view of a kopf index whose keys hold one value each
    (object names: namespaces, policies, node objects)."""

    def __init__(self, index: Any) -> None:
        self._index = index

    def __getitem__(self, key: str) -> Any:
        store = self._index.get(key)
        value = next(iter(store), None) if store is not None else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._index.keys()))

    def __len__(self) -> int:
        return len(self._index)


class PolicySpecs:
    """Live iterable over the specs in the policies index."""

    def __init__(self, index: Any) -> None:
        self._policies = Unique(index)

    def __iter__(self) -> Iterator[AccelerationPolicySpec]:
        return iter([entry[1] for entry in self._policies.values()])
