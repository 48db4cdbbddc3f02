"""The events this server has committed on PostgreSQL, held until the replica bridge delivers
them: the bridge hands them out when their commit's notification arrives, in sequence order with
the other replicas' events, instead of reading back from storage what this process just wrote."""

from __future__ import annotations

import threading

from runwire_server.events.values import Event


class CommittedHere:
    """Events committed by this server, by sequence number; the outbox adds, the bridge takes."""

    def __init__(self) -> None:
        self._events: dict[int, Event] = {}
        self._lock = threading.Lock()

    def add(self, events: list[Event]) -> None:
        """The outbox's publisher: called from the committing thread once a commit returns."""
        with self._lock:
            for event in events:
                self._events[event.seq] = event

    def take(self, after: int, upto: int) -> list[Event] | None:
        """Every event numbered after `after` up to `upto`, if all of them were committed here
        (and so are known without a read); else None, and nothing is taken."""
        with self._lock:
            wanted = range(after + 1, upto + 1)
            if any(seq not in self._events for seq in wanted):
                return None
            return [self._events.pop(seq) for seq in wanted]

    def forget(self, upto: int) -> None:
        """Drop what the bridge has delivered from storage instead."""
        with self._lock:
            for seq in [seq for seq in self._events if seq <= upto]:
                del self._events[seq]
