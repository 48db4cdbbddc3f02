"""The in-process broadcaster: committed events go to the watchers of their flow run.

Watchers never block writers: each has a bounded buffer, and one that falls behind is told so
(it then catches up from storage) instead of holding events in memory.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import deque

from runwire_server.events.values import Event


class Lagged(Exception):
    """The watcher's buffer overflowed; it must replay from storage after its last cursor."""


class Closed(Exception):
    """The server is shutting down."""


class Subscription:
    """Events of one flow run, or of every run when `flow_run_id` is None."""

    def __init__(self, broadcaster: Broadcaster, flow_run_id: uuid.UUID | None, limit: int) -> None:
        self.flow_run_id = flow_run_id
        self._broadcaster = broadcaster
        self._events: deque[Event] = deque()
        self._limit = limit
        self._wake = asyncio.Event()
        self._lagged = False
        self._closed = False

    def _offer(self, event: Event) -> None:
        if len(self._events) >= self._limit:
            self._events.clear()
            self._lagged = True
        else:
            self._events.append(event)
        self._wake.set()

    def _close(self) -> None:
        self._closed = True
        self._wake.set()

    async def next(self, wait_seconds: float) -> Event | None:
        """The next event, or None after `wait_seconds` without one."""
        while True:
            if self._lagged:
                self._lagged = False
                raise Lagged
            if self._events:
                return self._events.popleft()
            if self._closed:
                raise Closed
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait_seconds)
            except TimeoutError:
                return None

    def drain(self) -> list[Event]:
        """Every event already waiting, without waiting for more."""
        events = list(self._events)
        self._events.clear()
        return events

    def close(self) -> None:
        self._broadcaster.unsubscribe(self)


class Broadcaster:
    def __init__(self, buffer: int = 1000) -> None:
        self._buffer = buffer
        self._subscriptions: dict[uuid.UUID | None, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._closed = False

    def subscribers(self) -> int:
        """How many subscriptions are open (each open watch stream holds one)."""
        return sum(len(group) for group in self._subscriptions.values())

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def subscribe(self, flow_run_id: uuid.UUID | None) -> Subscription:
        """Subscribe to one run's events, or to every run's with None."""
        subscription = Subscription(self, flow_run_id, self._buffer)
        if self._closed:
            subscription._close()
        self._subscriptions.setdefault(flow_run_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        watchers = self._subscriptions.get(subscription.flow_run_id)
        if watchers is not None:
            watchers.discard(subscription)
            if not watchers:
                del self._subscriptions[subscription.flow_run_id]

    def publish(self, events: list[Event]) -> None:
        """Hand committed events to their watchers; callable from any thread."""
        if self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._deliver(events)
        else:
            self._loop.call_soon_threadsafe(self._deliver, events)

    def _deliver(self, events: list[Event]) -> None:
        everything = self._subscriptions.get(None, ())
        for event in events:
            for subscription in self._subscriptions.get(event.flow_run_id, ()):
                subscription._offer(event)
            for subscription in everything:
                subscription._offer(event)

    def close(self) -> None:
        self._closed = True
        for watchers in self._subscriptions.values():
            for subscription in watchers:
                subscription._close()
