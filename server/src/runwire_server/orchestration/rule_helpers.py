"""What the rules of both kinds of run share: replacement states, retries, results."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from runwire_server.orchestration.engine import Scope
from runwire_server.orchestration.states import State, StateType

S = StateType


def make_state(
    scope: Scope,
    type_: StateType,
    name: str | None = None,
    *,
    message: str = "",
    result: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> State:
    """A server-chosen replacement state, stamped with the transition's time."""
    details = dict(details or {})
    if type_ is S.SCHEDULED and "scheduled_time" not in details:
        details["scheduled_time"] = scope.transition.now
    return State(
        type=type_,
        name=name or type_.default_name,
        timestamp=scope.transition.now,
        message=message,
        details=details,
        result=result,
    )


def copy_scheduled_time(scope: Scope) -> None:
    """Carry the initial state's scheduled time into a proposal that has none."""
    t = scope.transition
    if t.initial is None or t.proposed is None:
        return
    if "scheduled_time" in t.initial.details and "scheduled_time" not in t.proposed.details:
        scheduled = t.initial.details["scheduled_time"]
        t.proposed = t.proposed.replace(details={**t.proposed.details, "scheduled_time": scheduled})


def retry_after(scope: Scope, delay_seconds: float) -> None:
    """Refuse a failure and schedule the next attempt, keeping the failure's message and result."""
    t = scope.transition
    assert t.proposed is not None
    scope.reject(
        make_state(
            scope,
            S.SCHEDULED,
            "AwaitingRetry",
            message=t.proposed.message,
            result=t.proposed.result,
            details={"scheduled_time": t.now + timedelta(seconds=delay_seconds)},
        ),
        "Retrying",
    )


def has_persisted_result(state: State | None) -> bool:
    return state is not None and bool(state.result)
