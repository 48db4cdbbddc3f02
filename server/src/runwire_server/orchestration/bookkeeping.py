"""Bookkeeping transforms: what every written state does to its run's fields.

They follow the reference's global policies (type, name and timestamp of the current state; start,
end and run times; expected and next scheduled start; run counts; the resuming flag; mirroring a
subflow's state onto its parent task run) and run innermost in every policy.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from runwire_server.orchestration.context import Transition
from runwire_server.orchestration.engine import Transform
from runwire_server.orchestration.states import TERMINAL_TYPES, State, StateType


class RunFields(Protocol):
    state_type: str | None
    state_name: str | None
    state_timestamp: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    total_run_time: float
    expected_start_time: datetime | None
    next_scheduled_start_time: datetime | None
    run_count: int


def apply_bookkeeping(run: RunFields, initial: State | None, proposed: State) -> None:
    """The bookkeeping common to flow runs and task runs (everything but run counts)."""
    run.state_type = proposed.type.value
    run.state_name = proposed.name
    run.state_timestamp = proposed.timestamp

    if proposed.type is StateType.RUNNING and run.start_time is None:
        run.start_time = proposed.timestamp

    if initial is not None and initial.is_final and not proposed.is_final:
        run.end_time = None
    if proposed.is_final and run.end_time is None:
        # A run that ends without ever running still gets both times (reference section 6).
        if run.start_time is None:
            run.start_time = proposed.timestamp
        run.end_time = proposed.timestamp

    if initial is not None and initial.type is StateType.RUNNING:
        run.total_run_time += max(0.0, (proposed.timestamp - initial.timestamp).total_seconds())

    if run.expected_start_time is None:
        run.expected_start_time = (
            proposed.scheduled_time
            if proposed.type is StateType.SCHEDULED and proposed.scheduled_time
            else proposed.timestamp
        )

    if initial is not None and initial.type is StateType.SCHEDULED:
        run.next_scheduled_start_time = None
    if proposed.type is StateType.SCHEDULED:
        run.next_scheduled_start_time = proposed.scheduled_time


class CommonBookkeeping(Transform):
    def before(self, transition: Transition) -> None:
        assert transition.proposed is not None
        apply_bookkeeping(transition.run, transition.initial, transition.proposed)


class FlowRunCount(Transform):
    """Count each run of a flow; a resume (straight from PAUSED, or a suspended run's later
    start) continues the same run, so it does not count."""

    def before(self, transition: Transition) -> None:
        proposed = transition.proposed
        assert proposed is not None
        policy = transition.run.empirical_policy
        resuming = bool(policy.get("resuming"))
        resumed_now = transition.initial_type is StateType.PAUSED
        if proposed.type is StateType.RUNNING and not (resuming or resumed_now):
            transition.run.run_count += 1
        if resuming and (proposed.type is StateType.RUNNING or proposed.is_final):
            transition.run.empirical_policy = {**policy, "resuming": False}


class TaskRunCount(Transform):
    def before(self, transition: Transition) -> None:
        assert transition.proposed is not None
        if transition.proposed.type is StateType.RUNNING:
            transition.run.run_count += 1


class MirrorToParentTask(Transform):
    """A subflow's task run in its parent flow follows the subflow's states."""

    def after(self, transition: Transition) -> None:
        run = transition.run
        if run.parent_task_run_id is not None and transition.validated is not None:
            transition.store.mirror_to_parent_task(
                run.parent_task_run_id, run.id, transition.validated
            )


FLOW_TRANSFORMS: tuple[Transform, ...] = (CommonBookkeeping(), FlowRunCount(), MirrorToParentTask())
TASK_TRANSFORMS: tuple[Transform, ...] = (CommonBookkeeping(), TaskRunCount())


def estimated_run_time(run: RunFields, now: datetime) -> timedelta:
    seconds = run.total_run_time
    if run.state_type == StateType.RUNNING and run.state_timestamp is not None:
        seconds += max(0.0, (now - run.state_timestamp).total_seconds())
    return timedelta(seconds=seconds)


def depends_on_clock(run: RunFields) -> bool:
    """Whether estimated_run_time or estimated_start_time_delta changes as time passes: while
    the run is running, and while it waits to start and is not finished."""
    if run.state_type == StateType.RUNNING and run.state_timestamp is not None:
        return True
    return (
        run.expected_start_time is not None
        and run.start_time is None
        and run.state_type not in TERMINAL_TYPES
    )


def estimated_start_time_delta(run: RunFields, now: datetime) -> timedelta:
    """How late the run started, or is while it has not started and is not finished."""
    expected = run.expected_start_time
    if expected is None:
        return timedelta(0)
    if run.start_time is not None:
        return max(timedelta(0), run.start_time - expected)
    finished = run.state_type in TERMINAL_TYPES
    if not finished and expected < now:
        return now - expected
    return timedelta(0)
