"""NodeEnrolments: the operator writes their spec (writer.py); it watches
them to repair hand edits and deletions, and reads the agents' status."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from pydantic import ValidationError

from meshaccel_api.v1alpha1 import GROUP, VERSION, NodeEnrolment, NodeEnrolmentSpec, NodeEnrolmentStatus
from meshaccel_operator.handlers.runtime import indexes_of
from meshaccel_operator.handlers.view import bind

log = logging.getLogger(__name__)


@kopf.index(GROUP, VERSION, NodeEnrolment.plural)
def node_enrolments(name: str, spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[str, Any] | None:
    try:
        parsed = NodeEnrolmentSpec.model_validate(dict(spec))
        reported = NodeEnrolmentStatus.model_validate(dict(status)) if status else None
    except ValidationError as exc:
        log.error("NodeEnrolment %s unreadable: %s", name, exc)
        return None
    return {name: (parsed, reported)}


@kopf.on.event(GROUP, VERSION, NodeEnrolment.plural)
def node_enrolment_event(name: str, type: str | None, spec: kopf.Spec, **kwargs: Any) -> None:
    writer = bind(indexes_of(kwargs))
    seen = None if type == "DELETED" else NodeEnrolmentSpec.model_validate(dict(spec))
    writer.observed(name, seen)
