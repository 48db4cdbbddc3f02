"""Run history: runs bucketed by expected start time and counted by current state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, case, cast, extract, func, or_, select
from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as f
from runwire_server.convert import now
from runwire_server.errors import InvalidArgument
from runwire_server.orchestration.states import TERMINAL_TYPES, StateType
from runwire_server.storage import filters
from runwire_server.storage import models as m

MAX_INTERVALS = 500


@dataclass
class StateCount:
    state_type: str
    state_name: str
    count_runs: int = 0
    sum_estimated_run_time: timedelta = timedelta(0)
    sum_estimated_lateness: timedelta = timedelta(0)


@dataclass
class Interval:
    start: datetime
    end: datetime
    states: list[StateCount] = field(default_factory=list)


def intervals(start: datetime, end: datetime, step: timedelta) -> list[Interval]:
    if step < timedelta(seconds=1):
        raise InvalidArgument("history_interval", "must be at least one second")
    if end < start:
        raise InvalidArgument("history_end", "must not be before history_start")
    count = -(-_micros(end - start) // _micros(step))  # ceiling division
    if count > MAX_INTERVALS:
        raise InvalidArgument(
            "history_interval", f"gives {count} intervals; at most {MAX_INTERVALS} are allowed"
        )
    return [Interval(start + i * step, min(start + (i + 1) * step, end)) for i in range(count)]


def flow_run_history(
    session: Session,
    start: datetime,
    end: datetime,
    step: timedelta,
    criteria: f.FlowRunCriteria,
) -> list[Interval]:
    """Counts and time sums per interval and state, aggregated by the database: a million runs
    never travel to Python. The sums follow orchestration.bookkeeping's estimated_run_time and
    estimated_start_time_delta, evaluated at one instant."""
    buckets = intervals(start, end, step)
    r = m.FlowRun
    clauses = [r.expected_start_time >= start, r.expected_start_time < end]
    matching = filters.flow_run_criteria(criteria)
    if matching is not None:
        clauses.append(matching)
    dialect = session.get_bind().dialect.name
    at = now()
    at_us = _epoch_us(at)
    expected = epoch_us(r.expected_start_time, dialect)
    state_at = epoch_us(r.state_timestamp, dialect)
    started = epoch_us(r.start_time, dialect)
    index = ((expected - _epoch_us(start)) // _micros(step)).label("index")
    running_us = case(
        (
            and_(r.state_type == StateType.RUNNING.value, r.state_timestamp.is_not(None)),
            _positive(at_us - state_at),
        ),
        else_=0,
    )
    not_finished = or_(r.state_type.is_(None), r.state_type.not_in(_TERMINAL))
    late_us = case(
        (r.start_time.is_not(None), _positive(started - expected)),
        (and_(not_finished, r.expected_start_time < at), at_us - expected),
        else_=0,
    )
    statement = (
        select(
            index,
            r.state_type,
            r.state_name,
            func.count(),
            func.coalesce(func.sum(r.total_run_time), 0.0),
            func.coalesce(func.sum(running_us), 0),
            func.coalesce(func.sum(late_us), 0),
        )
        .where(*clauses)
        .group_by(index, r.state_type, r.state_name)
        .order_by(index, r.state_type, r.state_name)
    )
    for bucket, state_type, state_name, count, run_s, running, late in session.execute(statement):
        buckets[int(bucket)].states.append(
            StateCount(
                state_type=state_type or "",
                state_name=state_name or "",
                count_runs=int(count),
                sum_estimated_run_time=timedelta(seconds=float(run_s), microseconds=int(running)),
                sum_estimated_lateness=timedelta(microseconds=int(late)),
            )
        )
    return buckets


_TERMINAL = sorted(t.value for t in TERMINAL_TYPES)


def epoch_us(column: Any, dialect: str) -> ColumnElement[int]:
    """Whole microseconds since 1970 of a stored UTC datetime, exactly (integers, not floats,
    so that a run on an interval boundary falls in the later interval)."""
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy always writes six digits).
        seconds = cast(func.strftime("%s", column), BigInteger)
        return seconds * 1_000_000 + cast(func.substr(column, 21, 6), BigInteger)
    return cast(func.round(extract("epoch", column) * 1_000_000), BigInteger)


def _positive(value: ColumnElement[int]) -> ColumnElement[int]:
    return case((value > 0, value), else_=0)


def _epoch_us(value: datetime) -> int:
    return _micros(value - EPOCH)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(delta: timedelta) -> int:
    # Integer arithmetic: floats would misplace runs that sit exactly on an interval boundary.
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
