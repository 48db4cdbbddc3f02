"""Run history: runs bucketed by expected start time and counted by current state."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    case,
    cast,
    extract,
    false,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as f
from runwire_server.clock import EPOCH, now
from runwire_server.errors import InvalidArgument
from runwire_server.orchestration.states import TERMINAL_TYPES, StateType
from runwire_server.storage import filters
from runwire_server.storage import models as m
from runwire_server.storage.database import Database

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
    estimated_start_time_delta, evaluated at one instant.

    Whole ten-minute slots come from flow_run_history_slots, which triggers keep (migration
    0003); the runs of the present slot, and of the smaller part of a slot an interval edge
    cuts, are read one by one (see _plan), as are all runs when the criteria reach beyond the
    flow. One statement reads both, so both parts see the same snapshot."""
    buckets = intervals(start, end, step)
    at_us = _epoch_us(now())
    dialect = session.get_bind().dialect.name
    start_us, end_us, step_us = _epoch_us(start), _epoch_us(end), _micros(step)
    if _beyond_flows(criteria):
        plan = _Plan(scan=[(start_us, end_us)])
    else:
        plan = _plan(buckets, start_us, end_us, step_us, at_us)
    parts = [_scan(plan, start, end, step, at_us, criteria, dialect)]
    if plan.slots:
        flows = filters.flow_clause(criteria.flows, "filter.flows")
        parts.append(_from_slots(plan.slots, start, step, at_us, flows))
    totals: dict[tuple[int, str, str], list[int]] = {}

    def add(index: int, state_type: str, state_name: str, sign: int, values: list[int]) -> None:
        total = totals.setdefault((index, state_type, state_name), [0, 0, 0])
        for i, value in enumerate(values):
            total[i] += sign * value

    for index, debit, state_type, state_name, count, *sums in session.execute(union_all(*parts)):
        if not count:
            continue
        values = [int(count), *_finish(at_us, *(int(value) for value in sums))]
        state = (state_type or "", state_name or "")
        if 0 <= index < len(buckets):
            add(int(index), *state, 1, values)
        if debit >= 0:  # a borrowed run: its slot went whole to interval `debit`
            add(int(debit), *state, -1, values)
    totals = {key: total for key, total in totals.items() if total[0]}
    for (i, state_type, state_name), (count, run_us, late_us) in sorted(totals.items()):
        buckets[i].states.append(
            StateCount(
                state_type=state_type,
                state_name=state_name,
                count_runs=count,
                sum_estimated_run_time=timedelta(microseconds=run_us),
                sum_estimated_lateness=timedelta(microseconds=late_us),
            )
        )
    return buckets


# The slot size of migration 0003's triggers.
SLOT_US = 600_000_000


def _finish(
    at_us: int,
    run_us: int,
    late_us: int,
    running: int,
    running_slots: int,
    running_offsets: int,
    waiting: int,
    waiting_slots: int,
    waiting_offsets: int,
) -> tuple[int, int]:
    """Run time and lateness at `at_us`: a slot keeps, for its running runs, their count and
    the sum of their state timestamps as offsets from the slot's start, so the sum of "now
    minus timestamp" is count x now - sum(slot start) - sum(offset); likewise for the expected
    starts of waiting runs. Python's integers do not overflow."""
    run_us += running * at_us - running_slots * SLOT_US - running_offsets
    late_us += waiting * at_us - waiting_slots * SLOT_US - waiting_offsets
    return run_us, late_us


@dataclass
class _Plan:
    # [low, high) microsecond ranges read run by run; each run counts in its own interval.
    scan: list[tuple[int, int]] = field(default_factory=list)
    # Ranges read run by run to take their runs out of the interval (by index) that got their
    # whole slot from the roll-up, and put them in their own interval (if in the window).
    borrowed: list[tuple[int, int, int]] = field(default_factory=list)
    # [first, last) slots read from the roll-up; each counts in the interval holding its middle.
    slots: list[tuple[int, int]] = field(default_factory=list)

    def read(self, low: int, high: int) -> None:
        _extend(self.scan, low, high)

    def take(self, first: int, last: int) -> None:
        _extend(self.slots, first, last)


def _extend(ranges: list[tuple[int, int]], low: int, high: int) -> None:
    """Add [low, high) to sorted ranges, joined to the last one when they touch."""
    if low >= high:
        return
    if ranges and ranges[-1][1] == low:
        ranges[-1] = (ranges[-1][0], high)
    else:
        ranges.append((low, high))


def _plan(buckets: list[Interval], start_us: int, end_us: int, step_us: int, at_us: int) -> _Plan:
    """Which slots come from the roll-up and which runs are read one by one.

    A slot that an interval edge cuts in two goes, whole, to the interval that holds its larger
    part; the runs of the smaller part are read one by one and moved to their own interval, so
    an edge costs at most half a slot of runs. The slot of the present moment is read run by
    run (its waiting runs are late or not depending on where in it they fall), as is a slot cut
    more than once (intervals shorter than a slot) or mostly outside the window."""
    plan = _Plan()
    present = at_us // SLOT_US
    cuts = [start_us + i * step_us for i in range(len(buckets))] + [end_us]
    # Slots with no cut inside them and not the present one come whole, in runs of slots.
    special = sorted({c // SLOT_US for c in cuts if c % SLOT_US} | {present})
    first_slot, end_slot = start_us // SLOT_US, -(-end_us // SLOT_US)
    cursor = first_slot
    for slot in special:
        if slot < first_slot or slot >= end_slot:
            continue
        plan.take(cursor, slot)
        cursor = slot + 1
        low, high = slot * SLOT_US, (slot + 1) * SLOT_US
        inside = cuts[bisect.bisect_right(cuts, low) : bisect.bisect_left(cuts, high)]
        middle = low + SLOT_US // 2
        if slot == present or len(inside) > 1 or not start_us <= middle < end_us:
            plan.read(max(low, start_us), min(high, end_us))
            continue
        plan.take(slot, slot + 1)
        owner = (middle - start_us) // step_us
        cut = inside[0]
        minor = (low, cut) if middle >= cut else (cut, high)
        plan.borrowed.append((*minor, owner))
    plan.take(cursor, end_slot)
    return plan


def _beyond_flows(criteria: f.FlowRunCriteria) -> bool:
    """Whether the criteria ask about more than the flow: the roll-up is keyed by flow only."""
    rest = f.FlowRunCriteria()
    rest.CopyFrom(criteria)
    rest.ClearField("flows")
    return filters.flow_run_criteria(rest) is not None


def _from_slots(
    slots: list[tuple[int, int]],
    start: datetime,
    step: timedelta,
    at_us: int,
    flows: ColumnElement[bool] | None,
) -> Select[*tuple[Any, ...]]:
    h = m.FlowRunHistorySlot
    present = at_us // SLOT_US
    # Every slot read here lies wholly before or wholly after the present moment; waiting runs
    # of slots after it are not late yet.
    past = h.slot < present
    clauses: list[ColumnElement[bool]] = [
        or_(*(and_(h.slot >= first, h.slot < last) for first, last in slots))
    ]
    # A slot counts in the interval that holds its middle (see _plan).
    index = (h.slot * SLOT_US + SLOT_US // 2 - _epoch_us(start)) // _micros(step)
    if flows is not None:
        clauses.append(h.flow_id.in_(select(m.Flow.id).where(flows)))
    return (
        select(
            index,
            literal(-1),
            h.state_type,
            h.state_name,
            func.sum(h.count_runs),
            func.sum(h.run_time_us),
            func.sum(h.start_lateness_us),
            # Sums of now minus an instant, taken apart so that no product of a count and an
            # instant since 1970 is formed in SQL (it overflows 64 bits); see _finish.
            func.sum(h.count_running),
            func.sum(h.count_running * h.slot),
            func.sum(h.running_offset_us),
            func.sum(case((past, h.count_waiting), else_=0)),
            func.sum(case((past, h.count_waiting * h.slot), else_=0)),
            func.sum(case((past, h.waiting_offset_us), else_=0)),
        )
        .where(*clauses)
        .group_by(index, h.state_type, h.state_name)
    )


def _scan(
    plan: _Plan,
    start: datetime,
    end: datetime,
    step: timedelta,
    at_us: int,
    criteria: f.FlowRunCriteria,
    dialect: str,
) -> Select[*tuple[Any, ...]]:
    """The runs of the plan's scan and borrowed ranges, aggregated per interval (-1 outside
    the window), the interval they are taken out of (-1 for none) and state."""
    r = m.FlowRun

    def within(low: int, high: int) -> ColumnElement[bool]:
        return and_(r.expected_start_time >= _at(low), r.expected_start_time < _at(high))

    ranges = plan.scan + [(low, high) for low, high, _ in plan.borrowed]
    clauses = [or_(*(within(low, high) for low, high in ranges)) if ranges else false()]
    matching = filters.flow_run_criteria(criteria)
    if matching is not None:
        clauses.append(matching)
    expected = epoch_us(r.expected_start_time, dialect)
    state_at = epoch_us(r.state_timestamp, dialect)
    started = epoch_us(r.start_time, dialect)
    # Borrowed runs may lie outside the window; SQL's division truncates toward zero, and
    # the last interval may be cut short, so the window is checked, not the quotient.
    index = case(
        (
            within(_epoch_us(start), _epoch_us(end)),
            (expected - _epoch_us(start)) // _micros(step),
        ),
        else_=-1,
    )
    debit: ColumnElement[int] = (
        case(*((within(low, high), owner) for low, high, owner in plan.borrowed), else_=-1)
        if plan.borrowed
        else literal(-1)
    )
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
        (and_(not_finished, r.expected_start_time < _at(at_us)), at_us - expected),
        else_=0,
    )
    # Whole microseconds per run, as the roll-up keeps them, so both parts add up alike.
    run_time_us = cast(func.round(r.total_run_time * 1_000_000), BigInteger)
    return (
        select(
            index,
            debit,
            r.state_type,
            r.state_name,
            func.count(),
            func.coalesce(func.sum(run_time_us + running_us), 0),
            func.coalesce(func.sum(late_us), 0),
            *[literal(0)] * 6,  # what _from_slots leaves to _finish; these runs are done
        )
        .where(*clauses)
        .group_by(index, debit, r.state_type, r.state_name)
    )


def _at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


_TERMINAL = sorted(t.value for t in TERMINAL_TYPES)


def epoch_us(column: Any, dialect: str) -> ColumnElement[int]:
    """Whole microseconds since 1970 of a stored UTC datetime, exactly (integers, not floats,
    so that a run on an interval boundary falls in the later interval)."""
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy always writes six digits). The
        # fraction is cut off before strftime, which works in milliseconds and would round
        # .9995 and above up to the next second.
        seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), BigInteger)
        return seconds * 1_000_000 + cast(func.substr(column, 21, 6), BigInteger)
    return cast(func.round(extract("epoch", column) * 1_000_000), BigInteger)


def _positive(value: ColumnElement[int]) -> ColumnElement[int]:
    return case((value > 0, value), else_=0)


def _epoch_us(value: datetime) -> int:
    return _micros(value - EPOCH)


def _micros(delta: timedelta) -> int:
    # Integer arithmetic: floats would misplace runs that sit exactly on an interval boundary.
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class HistoryService:
    """Flow run history: counts of runs per interval and state."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def flow_runs(
        self, start: datetime, end: datetime, step: timedelta, criteria: f.FlowRunCriteria
    ) -> list[Interval]:
        intervals(start, end, step)  # refused before the database is asked
        return await self._db.read(lambda s: flow_run_history(s, start, end, step, criteria))
