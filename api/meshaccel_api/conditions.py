"""metav1.Condition bookkeeping, shared by the operator and the agent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from meshaccel_api.v1alpha1 import Condition, ConditionStatus


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Iterable[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[Condition]:
    """Replace one condition; lastTransitionTime moves only when status flips."""
    out: list[Condition] = []
    previous = None
    for c in conditions:
        if c.type == type_:
            previous = c
        else:
            out.append(c)
    since = previous.lastTransitionTime if previous is not None and previous.status == status else now
    out.append(
        Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            lastTransitionTime=since,
            observedGeneration=generation,
        )
    )
    return sorted(out, key=lambda c: c.type)


def condition_status(conditions: Iterable[Condition], type_: str) -> ConditionStatus | None:
    return next((c.status for c in conditions if c.type == type_), None)
