"""The watch logic: replay a run's events from storage after a cursor, then follow live ones.

The watcher subscribes to the broadcaster before it reads storage, so an event committed
between the two is in one or the other (and skipped by its cursor if in both). Idle watchers
wait on their subscription and make no queries. A watcher whose buffer overflowed replays what
it missed from storage. Cursors only grow within a stream, so the last one a client saw is
always a safe place to resume from.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as f
from runwire_server.clock import now
from runwire_server.errors import CursorExpired, CursorOutOfRange
from runwire_server.events import outbox
from runwire_server.events.broadcast import Broadcaster, Closed, Lagged
from runwire_server.events.values import (
    CaughtUp,
    Codec,
    End,
    EndReason,
    Event,
    FlowRunStateChanged,
    Heartbeat,
    LogWritten,
    RunDeleted,
    RunEvent,
    TaskRunStateChanged,
    WatchItem,
)
from runwire_server.storage import filters, retention
from runwire_server.storage import models as m
from runwire_server.storage.database import Database
from runwire_server.storage.rows import require_exists

REPLAY_CHUNK = 500


@dataclass(frozen=True)
class WatchOptions:
    flow_run_id: uuid.UUID
    states: bool
    logs: bool
    task_runs: bool
    after_cursor: int | None
    heartbeat_seconds: float


@dataclass(frozen=True)
class RunsWatchOptions:
    filter: f.FlowRunCriteria
    after_cursor: int | None
    heartbeat_seconds: float


class Shutdown(Exception):
    """The shutdown marker was sent; the stream must end with a status that says reconnect."""


@dataclass(frozen=True)
class _Snapshot:
    current: Event | None  # the current state, as its stored event
    last: int  # the newest event of the run when the snapshot was taken


def _snapshot(session: Session, flow_run_id: uuid.UUID) -> _Snapshot:
    require_exists(session, m.FlowRun, flow_run_id, "flow run")
    last = outbox.last_seq(session, flow_run_id)
    current = outbox.last_event_of(session, flow_run_id, FlowRunStateChanged.kind)
    return _Snapshot(current, last)


def _check_cursor(session: Session, flow_run_id: uuid.UUID | None, cursor: int) -> None:
    """The run exists, the cursor is one this server could have given out, and no event after
    it has been pruned by retention."""
    if flow_run_id is not None:
        require_exists(session, m.FlowRun, flow_run_id, "flow run")
    newest = outbox.global_last_seq(session)
    if cursor > newest:
        raise CursorOutOfRange(cursor, newest)
    # One run's watch is concerned with that run's events only; a watch of every run, with all.
    if flow_run_id is not None:
        oldest = retention.run_pruned_through(session, flow_run_id)
    else:
        oldest = retention.pruned_through(session)
    if cursor < oldest:
        raise CursorExpired(cursor, oldest)


class Watcher:
    def __init__(
        self, db: Database, broadcaster: Broadcaster, codec: Codec, options: WatchOptions
    ) -> None:
        self._db = db
        self._broadcaster = broadcaster
        self._codec = codec
        self._options = options
        self._wanted = {
            FlowRunStateChanged.kind: options.states,
            TaskRunStateChanged.kind: options.task_runs,
            LogWritten.kind: options.logs,
        }
        self.cursor = options.after_cursor or 0
        self._state_since: datetime | None = None
        self._finished = False

    async def stream(self) -> AsyncIterator[WatchItem]:
        subscription = self._broadcaster.subscribe(self._options.flow_run_id)
        try:
            if self._options.after_cursor is None:
                async for event in self._from_snapshot():
                    yield event
            else:
                await self._db.read(
                    lambda s: _check_cursor(s, self._options.flow_run_id, self.cursor)
                )
                async for event in self._replay():
                    yield event
            yield CaughtUp(self.cursor)
            while not self._finished:
                try:
                    live = await subscription.next(self._options.heartbeat_seconds)
                except Lagged:
                    async for event in self._replay():
                        yield event
                    # The run-deleted end may have been among the events the buffer dropped:
                    # it is not with the run's stored events, which went with the run.
                    if not self._finished and await self._db.read(self._deleted):
                        yield End(self.cursor, EndReason.RUN_DELETED)
                        return
                    continue
                except Closed:
                    yield End(self.cursor, EndReason.SERVER_SHUTDOWN)
                    raise Shutdown from None
                if live is None:
                    yield self._heartbeat()
                elif live.kind == RunDeleted.kind:
                    yield End(self.cursor, EndReason.RUN_DELETED)
                    return
                elif live.seq > self.cursor and self._take(live):
                    yield live
            yield End(self.cursor, EndReason.RUN_FINISHED)
        finally:
            subscription.close()

    async def _from_snapshot(self) -> AsyncIterator[Event]:
        """Without a cursor: the existing logs (if asked), then the current state."""
        snapshot = await self._db.read(lambda s: _snapshot(s, self._options.flow_run_id))
        if self._options.logs:
            async for event in self._stored(until=snapshot.last):
                if event.kind == LogWritten.kind:
                    yield event
        self.cursor = snapshot.last
        if snapshot.current is not None:
            # Sent at the run's newest cursor, so a client resuming from it skips the rest: the
            # stored bytes carry the state's own cursor, so it is encoded anew.
            current = dataclasses.replace(
                snapshot.current,
                seq=snapshot.last,
                payload=b"",
                value=self._value(snapshot.current),
            )
            self._track(current)
            if self._options.states:
                yield current

    async def _stored(self, until: int | None = None) -> AsyncIterator[Event]:
        after = self.cursor
        while True:
            chunk = await self._db.read(partial(self._chunk, after=after))
            for event in chunk.events:
                if until is not None and event.seq > until:
                    return
                after = event.seq
                yield event
            if not chunk.more:
                return

    def _chunk(self, session: Session, *, after: int) -> outbox.Chunk:
        return outbox.events_after(session, self._options.flow_run_id, after, REPLAY_CHUNK)

    def _deleted(self, session: Session) -> bool:
        return outbox.deleted_after(session, self._options.flow_run_id, self.cursor)

    async def _replay(self) -> AsyncIterator[Event]:
        """Stored events after the cursor, oldest first, up to the run's end."""
        async for stored in self._stored():
            if self._take(stored):
                yield stored
            if self._finished:
                return

    def _take(self, event: Event) -> bool:
        """Advance past an event; whether this watcher wants it."""
        self.cursor = event.seq
        self._track(event)
        return self._wanted.get(event.kind, True)

    def _track(self, event: Event) -> None:
        if event.kind == FlowRunStateChanged.kind:
            value = self._value(event)
            if not isinstance(value, FlowRunStateChanged):
                raise TypeError(f"event {event.seq} is stored as a state change but is not one")
            self._state_since = value.state.timestamp
            self._finished = value.state.is_final

    def _value(self, event: Event) -> RunEvent:
        if event.value is not None:
            return event.value
        return self._codec.decode(event.flow_run_id, event.payload)

    def _heartbeat(self) -> Heartbeat:
        since = self._state_since
        return Heartbeat(self.cursor, None if since is None else now() - since)


class RunsWatcher:
    """WatchFlowRuns: state changes of every run matching a filter, on the global sequence."""

    def __init__(self, db: Database, broadcaster: Broadcaster, options: RunsWatchOptions) -> None:
        self._db = db
        self._broadcaster = broadcaster
        self._options = options
        self._criteria = filters.flow_run_criteria(options.filter)  # a SQL clause, or None
        self.cursor = 0

    async def stream(self) -> AsyncIterator[WatchItem]:
        subscription = self._broadcaster.subscribe(None)
        try:
            if self._options.after_cursor is None:
                self.cursor = await self._db.read(outbox.global_last_seq)
            else:
                self.cursor = self._options.after_cursor
                await self._db.read(lambda s: _check_cursor(s, None, self.cursor))
                async for event in self._replay():
                    yield event
            yield CaughtUp(self.cursor)
            while True:
                try:
                    live = await subscription.next(self._options.heartbeat_seconds)
                except Lagged:
                    async for event in self._replay():
                        yield event
                    continue
                except Closed:
                    yield End(self.cursor, EndReason.SERVER_SHUTDOWN)
                    raise Shutdown from None
                if live is None:
                    yield Heartbeat(self.cursor)
                    continue
                batch = [live, *subscription.drain()]
                async for event in self._live(batch):
                    yield event
        finally:
            subscription.close()

    async def _replay(self) -> AsyncIterator[Event]:
        while True:
            after = self.cursor
            chunk = await self._db.read(partial(self._chunk, after=after))
            for stored in chunk.events:
                self.cursor = stored.seq
                yield stored
            if not chunk.more:
                return

    def _chunk(self, session: Session, *, after: int) -> outbox.Chunk:
        return outbox.state_events_after(session, after, REPLAY_CHUNK, self._criteria)

    async def _live(self, batch: list[Event]) -> AsyncIterator[Event]:
        fresh = [e for e in batch if e.seq > self.cursor and e.kind == FlowRunStateChanged.kind]
        if not fresh:
            return
        ids = {e.flow_run_id for e in fresh}
        # One query per batch of changes decides which runs match (idle watchers make none).
        matching = await self._db.read(lambda s: outbox.matching_runs(s, ids, self._criteria))
        for e in fresh:
            self.cursor = e.seq
            if e.flow_run_id in matching:
                yield e


class WatchService:
    """Watch streams: one run's events, and the state changes of matching runs."""

    def __init__(self, db: Database, broadcaster: Broadcaster, codec: Codec) -> None:
        self._db = db
        self._broadcaster = broadcaster
        self._codec = codec

    def flow_run(self, options: WatchOptions) -> AsyncIterator[WatchItem]:
        """The run's events after the cursor (or from its current state), then live ones,
        until it finishes; raises Shutdown when the server stops."""
        return Watcher(self._db, self._broadcaster, self._codec, options).stream()

    def flow_runs(self, options: RunsWatchOptions) -> AsyncIterator[WatchItem]:
        """State changes of matching runs after the cursor (or from now), until closed;
        raises Shutdown when the server stops."""
        return RunsWatcher(self._db, self._broadcaster, options).stream()
