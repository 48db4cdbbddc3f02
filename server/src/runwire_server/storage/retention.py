"""What retention removes, one small batch per transaction: the watch events of runs that
finished before a cutoff, deletion markers older than it, and (when asked) finished runs.

Each finished run keeps its last state event, so a watch opened without a cursor still starts
from the run's final state. Runs are taken in the order they finished: a watermark (the end time
and id of the last run done) is kept in runwire_meta, so no pass reads a run twice unless the
run finished again since. An event is removed only once it is itself older than the cutoff;
runs are taken only once they finished some time before it (`finished_before`), so that the
lines a run logs just after it finishes go with the rest.

Every batch removes at most `rows` rows of each table, whatever the size of its runs: a batch
that meets the bound leaves its runs for the next one.

What was removed is recorded for watches: per run, the newest sequence number removed
(pruned_runs), and for the whole server the newest of all (HORIZON, for WatchFlowRuns). A watch
cursor below either may have missed events and is refused (events.watch).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from runwire_server.orchestration.states import TERMINAL_TYPES
from runwire_server.storage import models as m

R, E, D, P = m.FlowRun, m.RunEvent, m.RunDeletion, m.PrunedRun
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


def run_pruned_through(session: Session, flow_run_id: uuid.UUID) -> int:
    """The newest sequence number retention has removed of one run's events (0: none)."""
    row = session.get(P, flow_run_id)
    return 0 if row is None else row.through


def _finished(before: datetime) -> Any:
    return and_(R.end_time.is_not(None), R.end_time <= before, R.state_type.in_(FINISHED))


def prune_events(
    session: Session, finished_before: datetime, cutoff: datetime, runs: int, rows: int
) -> Batch:
    """Remove up to `rows` events older than `cutoff` of up to `runs` runs that finished
    before `finished_before`, but each run's last state event."""
    statement = select(R.id, R.end_time).where(_finished(finished_before))
    after = _get(session, _WATERMARK)
    if after is not None:
        end_time, run_id = datetime.fromisoformat(after["end_time"]), uuid.UUID(after["id"])
        statement = statement.where(
            or_(R.end_time > end_time, and_(R.end_time == end_time, R.id > run_id))
        )
    finished = session.execute(statement.order_by(R.end_time, R.id).limit(runs)).all()
    if not finished:
        return Batch(0, False)
    ids = [run_id for run_id, _ in finished]
    kept = (
        select(func.max(E.seq))
        .where(E.flow_run_id.in_(ids), E.kind == "flow_run_state")
        .group_by(E.flow_run_id)
    )
    doomed = select(E.seq).where(E.flow_run_id.in_(ids), E.created <= cutoff, E.seq.not_in(kept))
    removed = _delete_returning(session, doomed.limit(rows))
    _record(session, removed)
    if len(removed) == rows:
        return Batch(len(removed), True)  # the same runs again: they have more
    last_id, last_end = finished[-1]
    assert last_end is not None  # selected for its end time
    _put(session, _WATERMARK, {"end_time": last_end.isoformat(), "id": str(last_id)})
    return Batch(len(removed), len(finished) == runs)


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


def prune_runs(session: Session, finished_before: datetime, runs: int, rows: int) -> Batch:
    """Delete up to `runs` flow runs that finished before `finished_before`, with everything
    they own. Their logs, events and task runs go first, at most `rows` of each a batch, so
    that the cascade of the runs' own delete stays small."""
    ids = list(
        session.scalars(
            select(R.id).where(_finished(finished_before)).order_by(R.end_time, R.id).limit(runs)
        )
    )
    if not ids:
        return Batch(0, False)
    events = _delete_returning(session, select(E.seq).where(E.flow_run_id.in_(ids)).limit(rows))
    if events:
        _raise_horizon(session, max(seq for seq, _ in events))
    # A task run takes its states, tags and cache entries with it: fewer of them a batch.
    for model, most in ((m.Log, rows), (m.TaskRun, max(1, rows // 8))):
        owned = select(model.id).where(model.flow_run_id.in_(ids)).limit(most)
        gone = session.connection().execute(delete(model).where(model.id.in_(owned)))
        if gone.rowcount == most:
            return Batch(0, True)
    if len(events) == rows:
        return Batch(0, True)
    session.execute(delete(R).where(R.id.in_(ids)))
    return Batch(len(ids), len(ids) == runs)


def _delete_returning(session: Session, seqs: Any) -> list[tuple[int, uuid.UUID]]:
    """Delete the events whose sequence numbers `seqs` selects; return (seq, run) of each."""
    statement = delete(E).where(E.seq.in_(seqs.scalar_subquery())).returning(E.seq, E.flow_run_id)
    return [(seq, run_id) for seq, run_id in session.connection().execute(statement)]


def _record(session: Session, removed: Iterable[tuple[int, uuid.UUID]]) -> None:
    """Note, per run and for the server, the newest sequence number removed."""
    newest: dict[uuid.UUID, int] = {}
    for seq, run_id in removed:
        newest[run_id] = max(seq, newest.get(run_id, 0))
    if not newest:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(P).values([{"flow_run_id": k, "through": v} for k, v in newest.items()])
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[P.flow_run_id],
            set_={"through": func.max(P.through, statement.excluded.through)}
            if dialect == "sqlite"
            else {"through": func.greatest(P.through, statement.excluded.through)},
        )
    )
    _raise_horizon(session, max(newest.values()))


def _raise_horizon(session: Session, seq: int) -> None:
    if seq > pruned_through(session):
        _put(session, HORIZON, seq)


def _get(session: Session, key: str) -> Any:
    row = session.get(m.Meta, key)
    return None if row is None else json.loads(row.value)


def _put(session: Session, key: str, value: Any) -> None:
    session.merge(m.Meta(key=key, value=json.dumps(value)))
