"""Bookkeeping transforms as plain functions: no server, no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from runwire_server.orchestration.bookkeeping import (
    apply_bookkeeping,
    depends_on_clock,
    estimated_run_time,
    estimated_start_time_delta,
)
from runwire_server.orchestration.states import State, StateType

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class Run:
    state_type: str | None = None
    state_name: str | None = None
    state_timestamp: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    total_run_time: float = 0.0
    expected_start_time: datetime | None = None
    next_scheduled_start_time: datetime | None = None
    run_count: int = 0


def state(type_: StateType, minutes: float, **details: object) -> State:
    return State(
        type=type_,
        name=type_.default_name,
        timestamp=T0 + timedelta(minutes=minutes),
        details=dict(details),
    )


def test_a_scheduled_run_through_completion() -> None:
    run = Run()
    scheduled = state(StateType.SCHEDULED, 0, scheduled_time=T0 + timedelta(minutes=10))
    apply_bookkeeping(run, None, scheduled)
    assert run.expected_start_time == T0 + timedelta(minutes=10)
    assert run.next_scheduled_start_time == T0 + timedelta(minutes=10)

    pending = state(StateType.PENDING, 11)
    apply_bookkeeping(run, scheduled, pending)
    assert run.next_scheduled_start_time is None

    running = state(StateType.RUNNING, 12)
    apply_bookkeeping(run, pending, running)
    assert run.start_time == running.timestamp
    assert estimated_start_time_delta(run, T0) == timedelta(minutes=2)
    assert estimated_run_time(run, T0 + timedelta(minutes=15)) == timedelta(minutes=3)

    done = state(StateType.COMPLETED, 20)
    apply_bookkeeping(run, running, done)
    assert run.end_time == done.timestamp
    assert run.total_run_time == 8 * 60
    assert (run.state_type, run.state_name) == ("COMPLETED", "Completed")


def test_leaving_a_terminal_state_clears_the_end_time() -> None:
    run = Run()
    failed = state(StateType.FAILED, 1)
    apply_bookkeeping(run, None, failed)
    # Ending without running sets both times.
    assert run.start_time == run.end_time == failed.timestamp
    apply_bookkeeping(run, failed, state(StateType.SCHEDULED, 2))
    assert run.end_time is None


def test_lateness_of_a_run_not_started() -> None:
    run = Run(expected_start_time=T0, state_type="SCHEDULED")
    assert estimated_start_time_delta(run, T0 + timedelta(minutes=5)) == timedelta(minutes=5)
    run.state_type = "CANCELLED"
    assert estimated_start_time_delta(run, T0 + timedelta(minutes=5)) == timedelta(0)


def test_run_counts() -> None:
    from runwire_server.orchestration.bookkeeping import FlowRunCount, TaskRunCount
    from runwire_server.orchestration.context import RunFacts, Transition

    def count(transform, facts: RunFacts, proposed: State) -> RunFacts:
        transform.before(Transition(run=facts, initial=None, proposed=proposed, now=T0, store=None))  # type: ignore[arg-type]
        return facts

    running = state(StateType.RUNNING, 1)
    assert count(FlowRunCount(), RunFacts(id=None), running).run_count == 1  # type: ignore[arg-type]
    # Resuming a paused run continues the same run: no count, and the flag is cleared.
    resumed = count(FlowRunCount(), RunFacts(id=None, empirical_policy={"resuming": True}), running)  # type: ignore[arg-type]
    assert resumed.run_count == 0 and resumed.empirical_policy["resuming"] is False
    assert count(TaskRunCount(), RunFacts(id=None), running).run_count == 1  # type: ignore[arg-type]


def test_the_estimates_move_with_the_clock_exactly_when_said() -> None:
    """Messages of runs whose estimates do not move are kept between reads
    (convert.message_cache): the predicate must never miss a run whose estimates move."""
    times = (None, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    for state_type in [*(t.value for t in StateType), None]:
        for expected in times:
            for start in times:
                run = Run(
                    state_type=state_type,
                    state_timestamp=T0,
                    expected_start_time=expected,
                    start_time=start,
                    total_run_time=5.0,
                )
                moments = [T0 + timedelta(hours=h) for h in (-2, 0, 2, 4)]
                estimates = {
                    (estimated_run_time(run, at), estimated_start_time_delta(run, at))
                    for at in moments
                }
                assert (len(estimates) > 1) == depends_on_clock(run), run
