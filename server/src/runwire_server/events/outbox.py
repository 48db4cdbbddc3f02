"""The event outbox: every change a watcher can see is stored as an event in the same
transaction as the change, numbered in commit order, and handed to the in-process broadcaster
once the transaction has committed.

Sequence numbers come from a one-row counter that each event-writing transaction bumps just
before it commits. The counter's row lock is held until the commit, so numbers are given out in
commit order on PostgreSQL as well as on SQLite (where writers are serialized anyway). A watcher
that has read every event up to N from storage has therefore seen every committed event <= N.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, String, bindparam, cast, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from runwire_server.clock import now
from runwire_server.events.values import Codec, Event, RunDeleted, RunEvent
from runwire_server.storage import models as m
from runwire_server.storage.direct import Direct

Publisher = Callable[[list[Event]], None]

CHANNEL = "runwire_events"
_PENDING = "runwire_outbox"
_COMMITTED = "runwire_committed"


# Core statements on the tables: this runs in every event-writing transaction.
_SEQUENCE = m.table_of(m.EventSequence)
_BUMPED = (
    update(_SEQUENCE).where(_SEQUENCE.c.id == 1).values(value=_SEQUENCE.c.value + bindparam("n"))
)
_BUMP = Direct(_BUMPED.returning(_SEQUENCE.c.value))
# On PostgreSQL the bump also notifies every replica's listener of the new last number, which
# it delivers when (and only if) the transaction commits: one round trip for both.
_BUMP_AND_NOTIFY = Direct(
    _BUMPED.returning(_SEQUENCE.c.value, func.pg_notify(CHANNEL, cast(_SEQUENCE.c.value, String)))
)
_EVENTS = m.table_of(m.RunEvent)
_INSERT = Direct(insert(_EVENTS))
_DELETIONS = m.table_of(m.RunDeletion)
_INSERT_DELETION = Direct(insert(_DELETIONS))


def record(session: Session, value: RunEvent) -> None:
    """Queue an event; it is numbered and stored when the session commits. A run's deletion
    (RunDeleted) is stored apart, in run_deletions, since the run's events go with the run."""
    session.info.setdefault(_PENDING, []).append(value)


class Outbox:
    """Numbers, encodes and stores the events of each committing transaction, and publishes
    them once it has committed: the commit hooks of the database (Database.add_commit_hooks)."""

    def __init__(self, codec: Codec, publish: Publisher) -> None:
        self._codec = codec
        self.publish = publish

    def before_commit(self, session: Session) -> None:
        pending: list[RunEvent] | None = session.info.pop(_PENDING, None)
        if not pending:
            return
        session.flush()
        bodies = [self._codec.body(value) for value in pending]
        conn = session.connection()
        bump = _BUMP_AND_NOTIFY if conn.dialect.name == "postgresql" else _BUMP
        last = bump.scalar(conn, {"n": len(pending)})  # held until the commit: be quick
        first = last - len(pending) + 1
        at = now()
        rows, deletions, events = [], [], []
        for seq, value, body in zip(range(first, last + 1), pending, bodies, strict=True):
            payload = self._codec.numbered(seq, body)
            run_id = value.flow_run_id
            if isinstance(value, RunDeleted):
                deletions.append({"seq": seq, "flow_run_id": run_id, "created": at})
            else:
                rows.append(
                    {
                        "seq": seq,
                        "flow_run_id": run_id,
                        "kind": value.kind,
                        "payload": payload,
                        "created": at,
                    }
                )
            events.append(Event(seq, run_id, value.kind, payload, value))
        if rows:
            _INSERT.execute_many(conn, rows)
        if deletions:
            _INSERT_DELETION.execute_many(conn, deletions)
        session.info.setdefault(_COMMITTED, []).extend(events)

    def after_commit(self, session: Session) -> None:
        committed = session.info.pop(_COMMITTED, None)
        if committed:
            self.publish(committed)

    def after_rollback(self, session: Session) -> None:
        session.info.pop(_PENDING, None)
        session.info.pop(_COMMITTED, None)


# A replay reads at most REPLAY_BYTES of payloads at a time (and always at least one event): a
# chunk of events that carry large inline results would otherwise all sit in memory at once.
# Their sizes are summed first, without reading the payloads.
REPLAY_BYTES = 8 * 1024 * 1024


def _sizes(*where: Any) -> Select[Any]:
    """Sequence numbers and payload sizes of the events `where` selects, oldest first."""
    return (
        select(_EVENTS.c.seq, func.length(_EVENTS.c.payload).label("size"))
        .where(*where)
        .order_by(_EVENTS.c.seq)
        .limit(bindparam("limit", type_=Integer))
    )


def _within_budget(statement: Select[Any]) -> Select[Any]:
    """The payloads of the events `statement` (a `_sizes` select) finds, up to the budget."""
    sizes = statement.subquery("sizes")
    before = (func.sum(sizes.c.size).over(order_by=sizes.c.seq) - sizes.c.size).label("before")
    found = func.count().over().label("found")  # events in the chunk before the budget
    running = select(sizes.c.seq, before, found).subquery("running")
    return (
        select(
            _EVENTS.c.seq, _EVENTS.c.flow_run_id, _EVENTS.c.kind, _EVENTS.c.payload, running.c.found
        )
        .join(running, running.c.seq == _EVENTS.c.seq)
        .where(running.c.before < bindparam("budget", type_=Integer))
        .order_by(_EVENTS.c.seq)
    )


_EVENTS_AFTER = Direct(
    _within_budget(
        _sizes(_EVENTS.c.flow_run_id == bindparam("run_id"), _EVENTS.c.seq > bindparam("after"))
    )
)
_RUN_LAST_SEQ = Direct(
    select(func.max(_EVENTS.c.seq)).where(_EVENTS.c.flow_run_id == bindparam("run_id"))
)
_LAST_OF_KIND = Direct(
    select(_EVENTS.c.seq, _EVENTS.c.flow_run_id, _EVENTS.c.kind, _EVENTS.c.payload)
    .where(_EVENTS.c.flow_run_id == bindparam("run_id"), _EVENTS.c.kind == bindparam("kind"))
    .order_by(_EVENTS.c.seq.desc())
    .limit(1)
)


@dataclass(frozen=True)
class Chunk:
    """Stored events in sequence order, and whether more may follow them."""

    events: list[Event]  # as stored: their values are not decoded
    more: bool


def events_after(session: Session, flow_run_id: uuid.UUID, after: int, limit: int) -> Chunk:
    """A run's events after `after`: at most `limit`, and at most REPLAY_BYTES of them."""
    rows = _EVENTS_AFTER.rows(
        session.connection(),
        {"run_id": flow_run_id, "after": after, "limit": limit, "budget": REPLAY_BYTES},
    )
    return _chunk(rows, limit)


def _chunk(rows: Sequence[Any], limit: int) -> Chunk:
    found = rows[0][4] if rows else 0
    return Chunk(
        [Event(seq, run_id, kind, payload) for seq, run_id, kind, payload, _ in rows],
        more=found == limit or len(rows) < found,
    )


_DELETED_AFTER = Direct(
    select(_DELETIONS.c.seq)
    .where(_DELETIONS.c.flow_run_id == bindparam("run_id"), _DELETIONS.c.seq > bindparam("after"))
    .limit(1)
)


def deleted_after(session: Session, flow_run_id: uuid.UUID, after: int) -> bool:
    """Whether the run was deleted after the event numbered `after`."""
    found = _DELETED_AFTER.first(session.connection(), {"run_id": flow_run_id, "after": after})
    return found is not None


def last_seq(session: Session, flow_run_id: uuid.UUID) -> int:
    value = _RUN_LAST_SEQ.scalar(session.connection(), {"run_id": flow_run_id})
    return int(value or 0)


def last_event_of(session: Session, flow_run_id: uuid.UUID, kind: str) -> Event | None:
    """The newest stored event of one kind (such as "flow_run_state") of a run."""
    row = _LAST_OF_KIND.first(session.connection(), {"run_id": flow_run_id, "kind": kind})
    return None if row is None else Event(*row)


def global_last_seq(source: Session | Connection) -> int:
    """The newest committed event number of the whole server."""
    conn = source.connection() if isinstance(source, Session) else source
    value = _LAST_SEQ.scalar(conn, {})
    return int(value or 0)


_LAST_SEQ = Direct(select(_SEQUENCE.c.value).where(_SEQUENCE.c.id == 1))


def state_events_after(session: Session, after: int, limit: int, criteria: Any) -> Chunk:
    """Flow-run state events after `after`, of runs that match `criteria` (a SQL clause on
    flow runs, or None for all): at most `limit`, and at most REPLAY_BYTES of them."""
    sizes = _sizes(
        _EVENTS.c.seq > after,
        _EVENTS.c.kind == "flow_run_state",
        *([] if criteria is None else [criteria]),
    ).join(m.FlowRun, m.FlowRun.id == _EVENTS.c.flow_run_id)
    rows = session.execute(_within_budget(sizes), {"limit": limit, "budget": REPLAY_BYTES}).all()
    return _chunk(rows, limit)


def matching_runs(session: Session, run_ids: set[uuid.UUID], criteria: Any) -> set[uuid.UUID]:
    if criteria is None or not run_ids:
        return run_ids
    return set(session.scalars(select(m.FlowRun.id).where(m.FlowRun.id.in_(run_ids), criteria)))


def events_since(session: Session, after: int, limit: int) -> list[Event]:
    """Every run's events and deletions after a global position, oldest first (for the
    replica bridge).

    Both tables are read up to the committed counter, read first: numbers are given out in
    commit order, so every event and deletion at or below it has committed, and each of the two
    reads (separate snapshots under READ COMMITTED) sees all of them."""
    upper = global_last_seq(session)
    rows = session.execute(
        select(m.RunEvent.seq, m.RunEvent.flow_run_id, m.RunEvent.kind, m.RunEvent.payload)
        .where(m.RunEvent.seq > after, m.RunEvent.seq <= upper)
        .order_by(m.RunEvent.seq)
        .limit(limit)
    ).all()
    events = [Event(seq, run_id, kind, payload) for seq, run_id, kind, payload in rows]
    # Deletions are few: those in the same range of the sequence join the events in order.
    if len(events) == limit:
        upper = events[-1].seq
    deleted = (
        select(m.RunDeletion.seq, m.RunDeletion.flow_run_id)
        .where(m.RunDeletion.seq > after, m.RunDeletion.seq <= upper)
        .order_by(m.RunDeletion.seq)
        .limit(limit)
    )
    for seq, flow_run_id in session.execute(deleted):
        events.append(Event(seq, flow_run_id, RunDeleted.kind, b"", RunDeleted(flow_run_id)))
    events.sort(key=lambda event: event.seq)
    return events[:limit]
