"""Run history: runs bucketed by expected start time and counted by current state."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as f
from runwire_server.convert import now
from runwire_server.errors import InvalidArgument
from runwire_server.orchestration.bookkeeping import estimated_run_time, estimated_start_time_delta
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
    buckets = intervals(start, end, step)
    r = m.FlowRun
    clauses = [r.expected_start_time >= start, r.expected_start_time < end]
    matching = filters.flow_run_criteria(criteria)
    if matching is not None:
        clauses.append(matching)
    statement = select(
        r.expected_start_time,
        r.state_type,
        r.state_name,
        r.state_timestamp,
        r.start_time,
        r.total_run_time,
    ).where(*clauses)
    at = now()
    step_us = _micros(step)
    counts: dict[tuple[int, str, str], StateCount] = defaultdict(lambda: StateCount("", ""))
    for row in session.execute(statement).yield_per(1000):
        index = _micros(row.expected_start_time - start) // step_us
        key = (index, row.state_type or "", row.state_name or "")
        entry = counts[key]
        entry.state_type, entry.state_name = key[1], key[2]
        entry.count_runs += 1
        entry.sum_estimated_run_time += estimated_run_time(row, at)
        entry.sum_estimated_lateness += estimated_start_time_delta(row, at)
    for (index, _, _), entry in sorted(counts.items()):
        buckets[index].states.append(entry)
    return buckets


def _micros(delta: timedelta) -> int:
    # Integer arithmetic: pendulum's intervals do not divide by plain timedeltas, and floats
    # would misplace runs that sit exactly on an interval boundary.
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
