"""The writer's view of the cluster, bound on the first event handler call.

kopf calls event handlers only after every index has seen its initial
listing, so the writer gets its view from the first event handler call and
never writes a node's enrolment from a partial picture (which would briefly
un-enrol pods at every operator restart).
"""

from __future__ import annotations

import logging
from typing import Any

from meshaccel_api.v1alpha1 import NodeEnrolmentSpec
from meshaccel_operator.handlers.runtime import RUNTIME, PolicySpecs, Unique
from meshaccel_operator.writer import ClusterView, NodeWriter

log = logging.getLogger(__name__)


def bind(indexes: dict[str, Any]) -> NodeWriter:
    writer = RUNTIME.require_writer()
    if writer.view is None:
        RUNTIME.indexes = indexes
        pods = RUNTIME.pods
        assert pods is not None
        nodes = Unique(indexes["node_enrolments"])

        def current(node: str) -> NodeEnrolmentSpec | None:
            entry = nodes.get(node)
            return entry[0] if entry else None

        writer.view = ClusterView(
            pods_on=pods.pods_on,
            nodes_with_pods=pods.nodes,
            synced=lambda: pods.synced,
            namespaces=Unique(indexes["namespace_labels"]),
            policies=PolicySpecs(indexes["policies"]),
            current=current,
        )
        writer.mark_all()
        log.info("kopf indexes complete: %d namespace(s)", len(writer.view.namespaces))
    return writer


def mark_all_if_changed(kind: str, name: str, type: str | None, relevant: Any, indexes: dict[str, Any]) -> None:
    """Re-evaluate every node, but only when what selection depends on changed:
    a namespace's labels, a policy's spec. Annotations, our own status writes
    and re-lists then cost nothing."""
    writer = bind(indexes)
    key = (kind, name)
    value = None if type == "DELETED" else relevant
    if RUNTIME.seen.get(key, ...) != value:
        RUNTIME.seen[key] = value
        writer.mark_all()
