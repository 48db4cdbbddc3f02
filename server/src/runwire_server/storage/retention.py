"""What retention removes, one small batch per transaction: the watch events of runs that
finished before a cutoff, deletion markers older than it, and (when asked) finished runs.

Each finished run keeps its last state event, so a watch opened without a cursor still starts
from the run's final state. Events go in the order their runs finished: a watermark (the end
time and id of the last run done) is kept in runwire_meta, so no pass reads a run twice unless
the run finished again since. The newest sequence number pruned is kept there too: a watch
cursor below it may have missed what was removed, and is refused (services.watch).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from runwire_server.orchestration.states import TERMINAL_TYPES
from runwire_server.storage import models as m

R, E, D = m.FlowRun, m.RunEvent, m.RunDeletion
FINISHED = sorted(t.value for t in TERMINAL_TYPES)
HORIZON = "events_pruned_through"
_WATERMARK = "events_pruned_after"


@dataclass(frozen=True)
class Batch:
    """What one batch removed, and whether more may be waiting."""

    rows: int
    more: bool


def pruned_through(session: Session) -> int:
    """The newest event sequence number retention has removed (0: none)."""
    row = session.get(m.Meta, HORIZON)
    return 0 if row is None else int(row.value)


def prune_events(session: Session, cutoff: datetime, runs: int) -> Batch:
    """Remove the events of up to `runs` runs that finished before `cutoff`, but each run's
    last state event."""
    statement = (
        select(R.id, R.end_time)
        .where(R.end_time.is_not(None), R.end_time <= cutoff, R.state_type.in_(FINISHED))
        .order_by(R.end_time, R.id)
        .limit(runs)
    )
    after = _get(session, _WATERMARK)
    if after is not None:
        end_time, run_id = datetime.fromisoformat(after["end_time"]), uuid.UUID(after["id"])
        statement = statement.where(
            or_(R.end_time > end_time, and_(R.end_time == end_time, R.id > run_id))
        )
    finished = session.execute(statement).all()
    if not finished:
        return Batch(0, False)
    ids = [run_id for run_id, _ in finished]
    kept = (
        select(func.max(E.seq))
        .where(E.flow_run_id.in_(ids), E.kind == "flow_run_state")
        .group_by(E.flow_run_id)
    )
    doomed = and_(E.flow_run_id.in_(ids), E.seq.not_in(kept))
    newest = session.scalar(select(func.max(E.seq)).where(doomed))
    removed = 0
    if newest is not None:
        removed = session.connection().execute(delete(E).where(doomed)).rowcount
        _raise_horizon(session, newest)
    last_id, last_end = finished[-1]
    assert last_end is not None  # selected for its end time
    _put(session, _WATERMARK, {"end_time": last_end.isoformat(), "id": str(last_id)})
    return Batch(removed, len(finished) == runs)


def prune_deletions(session: Session, cutoff: datetime, rows: int) -> Batch:
    """Remove up to `rows` run-deleted markers recorded before `cutoff`."""
    seqs = list(
        session.scalars(select(D.seq).where(D.created <= cutoff).order_by(D.seq).limit(rows))
    )
    if not seqs:
        return Batch(0, False)
    session.execute(delete(D).where(D.seq.in_(seqs)))
    _raise_horizon(session, seqs[-1])
    return Batch(len(seqs), len(seqs) == rows)


def prune_runs(session: Session, cutoff: datetime, runs: int) -> Batch:
    """Delete up to `runs` flow runs that finished before `cutoff`, with everything they own
    (states, task runs, logs, events: the foreign keys cascade)."""
    ids = list(
        session.scalars(
            select(R.id)
            .where(R.end_time.is_not(None), R.end_time <= cutoff, R.state_type.in_(FINISHED))
            .order_by(R.end_time, R.id)
            .limit(runs)
        )
    )
    if not ids:
        return Batch(0, False)
    newest = session.scalar(select(func.max(E.seq)).where(E.flow_run_id.in_(ids)))
    session.execute(delete(R).where(R.id.in_(ids)))
    if newest is not None:
        _raise_horizon(session, newest)
    return Batch(len(ids), len(ids) == runs)


def _raise_horizon(session: Session, seq: int) -> None:
    if seq > pruned_through(session):
        _put(session, HORIZON, seq)


def _get(session: Session, key: str) -> Any:
    row = session.get(m.Meta, key)
    return None if row is None else json.loads(row.value)


def _put(session: Session, key: str, value: Any) -> None:
    session.merge(m.Meta(key=key, value=json.dumps(value)))
