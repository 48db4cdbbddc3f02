"""WatchFlowRun: replay a run's events from storage after a cursor, then follow live ones.

The watcher subscribes to the broadcaster before it reads storage, so an event committed
between the two is in one or the other (and skipped by its cursor if in both). Idle watchers
wait on their subscription and make no queries. A watcher whose buffer overflowed replays what
it missed from storage. Cursors only grow within a stream, so the last one a client saw is
always a safe place to resume from.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from runwire.v1 import watch_pb2
from runwire_server.broadcast import Broadcaster, Closed, Lagged
from runwire_server.clock import now
from runwire_server.convert import duration
from runwire_server.errors import CursorExpired, CursorOutOfRange, InvalidArgument
from runwire_server.ids import require_id
from runwire_server.orchestration.states import TERMINAL_TYPES
from runwire_server.services.common import require_exists
from runwire_server.settings import Settings
from runwire_server.storage import filters, outbox, retention
from runwire_server.storage import models as m
from runwire_server.storage.database import Database
from runwire_server.wire_scalars import state_type_from_proto, to_datetime, to_timedelta

W = watch_pb2.WatchFlowRunResponse
End = watch_pb2.StreamEnd
REPLAY_CHUNK = 500


@dataclass(frozen=True)
class WatchOptions:
    flow_run_id: uuid.UUID
    states: bool
    logs: bool
    task_runs: bool
    after_cursor: int | None
    heartbeat_seconds: float


def options_from(request: watch_pb2.WatchFlowRunRequest, settings: Settings) -> WatchOptions:
    heartbeat = _heartbeat_seconds(request, settings)
    if request.HasField("after_cursor") and request.after_cursor < 0:
        raise InvalidArgument("after_cursor", "must not be negative")
    return WatchOptions(
        flow_run_id=require_id(request.flow_run_id, "flow_run_id"),
        states=request.stream_states if request.HasField("stream_states") else True,
        logs=request.stream_logs if request.HasField("stream_logs") else True,
        task_runs=request.include_task_runs,
        after_cursor=request.after_cursor if request.HasField("after_cursor") else None,
        heartbeat_seconds=heartbeat,
    )


class Shutdown(Exception):
    """The shutdown marker was sent; the stream must end with a status that says reconnect."""


@dataclass(frozen=True)
class _Snapshot:
    current: W | None  # the current state, as its stored event
    last: int  # the newest event of the run when the snapshot was taken


def _snapshot(session: Session, flow_run_id: uuid.UUID) -> _Snapshot:
    require_exists(session, m.FlowRun, flow_run_id, "flow run")
    last = outbox.last_seq(session, flow_run_id)
    current = outbox.last_event_of(session, flow_run_id, "flow_run_state")
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
    def __init__(self, db: Database, broadcaster: Broadcaster, options: WatchOptions) -> None:
        self._db = db
        self._broadcaster = broadcaster
        self._options = options
        self.cursor = options.after_cursor or 0
        self._state_since: datetime | None = None
        self._finished = False

    async def stream(self) -> AsyncIterator[W | bytes]:
        subscription = self._broadcaster.subscribe(self._options.flow_run_id)
        try:
            if self._options.after_cursor is None:
                async for message in self._from_snapshot():
                    yield message
            else:
                await self._db.read(
                    lambda s: _check_cursor(s, self._options.flow_run_id, self.cursor)
                )
                async for message in self._replay():
                    yield message
            yield self._marker(caught_up=watch_pb2.CaughtUp())
            while not self._finished:
                try:
                    event = await subscription.next(self._options.heartbeat_seconds)
                except Lagged:
                    async for message in self._replay():
                        yield message
                    # The run-deleted end may have been among the events the buffer dropped:
                    # it is not with the run's stored events, which went with the run.
                    if not self._finished and await self._db.read(self._deleted):
                        yield self._marker(end=End(reason=End.REASON_RUN_DELETED))
                        return
                    continue
                except Closed:
                    yield self._marker(end=End(reason=End.REASON_SERVER_SHUTDOWN))
                    raise Shutdown from None
                if event is None:
                    yield self._heartbeat()
                elif event.message.WhichOneof("event") == "end":
                    yield self._marker(end=event.message.end)
                    return
                elif event.seq > self.cursor and self._take(event.message) is not None:
                    # The bytes serialized once at commit go to every watcher as they are.
                    yield event.payload or event.message
            yield self._marker(end=End(reason=End.REASON_RUN_FINISHED))
        finally:
            subscription.close()

    async def _from_snapshot(self) -> AsyncIterator[W]:
        """Without a cursor: the existing logs (if asked), then the current state."""
        snapshot = await self._db.read(lambda s: _snapshot(s, self._options.flow_run_id))
        if self._options.logs:
            async for message in self._stored(until=snapshot.last):
                if message.WhichOneof("event") == "log":
                    yield message
        self.cursor = snapshot.last
        if snapshot.current is not None:
            current = W()
            current.CopyFrom(snapshot.current)
            current.cursor = snapshot.last
            self._track(current)
            if self._options.states:
                yield current

    async def _stored(self, until: int | None = None) -> AsyncIterator[W]:
        after = self.cursor
        while True:
            chunk = await self._db.read(partial(self._chunk, after=after))
            for message in chunk.messages:
                if until is not None and message.cursor > until:
                    return
                after = message.cursor
                yield message
            if not chunk.more:
                return

    def _chunk(self, session: Session, *, after: int) -> outbox.Chunk:
        return outbox.events_after(session, self._options.flow_run_id, after, REPLAY_CHUNK)

    def _deleted(self, session: Session) -> bool:
        return outbox.deleted_after(session, self._options.flow_run_id, self.cursor)

    async def _replay(self) -> AsyncIterator[W]:
        """Stored events after the cursor, oldest first, up to the run's end."""
        async for stored in self._stored():
            message = self._take(stored)
            if message is not None:
                yield message
            if self._finished:
                return

    def _take(self, message: W) -> W | None:
        """Advance past an event; return it if this watcher wants it."""
        self.cursor = message.cursor
        self._track(message)
        kind = message.WhichOneof("event")
        wanted = {
            "flow_run_state": self._options.states,
            "task_run_state": self._options.task_runs,
            "log": self._options.logs,
        }.get(kind or "", True)
        return message if wanted else None

    def _track(self, message: W) -> None:
        if message.WhichOneof("event") == "flow_run_state":
            state = message.flow_run_state.state
            self._state_since = to_datetime(state.timestamp, "state.timestamp")
            self._finished = state_type_from_proto(state.type, "state.type") in TERMINAL_TYPES

    def _marker(self, **event: Any) -> W:
        return W(cursor=self.cursor, **event)

    def _heartbeat(self) -> W:
        beat = watch_pb2.Heartbeat()
        if self._state_since is not None:
            beat.time_in_state.CopyFrom(duration(now() - self._state_since))
        return self._marker(heartbeat=beat)


@dataclass(frozen=True)
class RunsWatchOptions:
    criteria: Any  # a compiled SQL clause on flow runs, or None for every run
    after_cursor: int | None
    heartbeat_seconds: float


def runs_options_from(
    request: watch_pb2.WatchFlowRunsRequest, settings: Settings
) -> RunsWatchOptions:

    heartbeat = _heartbeat_seconds(request, settings)
    if request.HasField("after_cursor") and request.after_cursor < 0:
        raise InvalidArgument("after_cursor", "must not be negative")
    return RunsWatchOptions(
        criteria=filters.flow_run_criteria(request.filter),
        after_cursor=request.after_cursor if request.HasField("after_cursor") else None,
        heartbeat_seconds=heartbeat,
    )


R = watch_pb2.WatchFlowRunsResponse


class RunsWatcher:
    """WatchFlowRuns: state changes of every run matching a filter, on the global sequence."""

    def __init__(self, db: Database, broadcaster: Broadcaster, options: RunsWatchOptions) -> None:
        self._db = db
        self._broadcaster = broadcaster
        self._options = options
        self.cursor = 0

    async def stream(self) -> AsyncIterator[R]:
        subscription = self._broadcaster.subscribe(None)
        try:
            if self._options.after_cursor is None:
                self.cursor = await self._db.read(outbox.global_last_seq)
            else:
                self.cursor = self._options.after_cursor
                await self._db.read(lambda s: _check_cursor(s, None, self.cursor))
                async for message in self._replay():
                    yield message
            yield R(cursor=self.cursor, caught_up=watch_pb2.CaughtUp())
            while True:
                try:
                    event = await subscription.next(self._options.heartbeat_seconds)
                except Lagged:
                    async for message in self._replay():
                        yield message
                    continue
                except Closed:
                    yield R(cursor=self.cursor, end=End(reason=End.REASON_SERVER_SHUTDOWN))
                    raise Shutdown from None
                if event is None:
                    yield R(cursor=self.cursor, heartbeat=watch_pb2.Heartbeat())
                    continue
                batch = [event, *subscription.drain()]
                async for message in self._live(batch):
                    yield message
        finally:
            subscription.close()

    async def _replay(self) -> AsyncIterator[R]:
        while True:
            after = self.cursor
            chunk = await self._db.read(partial(self._chunk, after=after))
            for stored in chunk.messages:
                self.cursor = stored.cursor
                yield R(cursor=stored.cursor, flow_run_state=stored.flow_run_state)
            if not chunk.more:
                return

    def _chunk(self, session: Session, *, after: int) -> outbox.Chunk:
        return outbox.state_events_after(session, after, REPLAY_CHUNK, self._options.criteria)

    async def _live(self, batch: list[Any]) -> AsyncIterator[R]:
        fresh = [
            e
            for e in batch
            if e.seq > self.cursor and e.message.WhichOneof("event") == "flow_run_state"
        ]
        if not fresh:
            return
        ids = {e.flow_run_id for e in fresh}
        # One query per batch of changes decides which runs match (idle watchers make none).
        matching = await self._db.read(
            lambda s: outbox.matching_runs(s, ids, self._options.criteria)
        )
        for e in fresh:
            self.cursor = e.seq
            if e.flow_run_id in matching:
                yield R(cursor=e.seq, flow_run_state=e.message.flow_run_state)


def _heartbeat_seconds(request: Any, settings: Settings) -> float:
    heartbeat = settings.watch_heartbeat_seconds
    if request.HasField("heartbeat_interval"):
        heartbeat = to_timedelta(request.heartbeat_interval, "heartbeat_interval").total_seconds()
        low, high = settings.watch_min_heartbeat_seconds, settings.watch_max_heartbeat_seconds
        if not low <= heartbeat <= high:
            raise InvalidArgument("heartbeat_interval", f"must be between {low} and {high} seconds")
    return heartbeat


class WatchService:
    """Watch streams: one run's events, and the state changes of matching runs."""

    def __init__(self, db: Database, broadcaster: Broadcaster) -> None:
        self._db = db
        self._broadcaster = broadcaster

    def flow_run(self, options: WatchOptions) -> AsyncIterator[W | bytes]:
        """The run's events after the cursor (or from its current state), then live ones,
        until it finishes; raises Shutdown when the server stops."""
        return Watcher(self._db, self._broadcaster, options).stream()

    def flow_runs(self, options: RunsWatchOptions) -> AsyncIterator[R]:
        """State changes of matching runs after the cursor (or from now), until closed;
        raises Shutdown when the server stops."""
        return RunsWatcher(self._db, self._broadcaster, options).stream()
