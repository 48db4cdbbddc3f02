"""Events across replicas on PostgreSQL: LISTEN/NOTIFY wakes every server, storage is the truth.

Each committing transaction notifies the channel with its last sequence number
(events.outbox); every replica, this one included, listens on a connection of its own and, when
woken, hands its broadcaster the events after the last one it handed out, in sequence order.
Those this server committed itself it already holds (events.committed); any others are read
from storage. Notifications are only lost while the listening connection is down, and the
bridge catches up from storage each time it reconnects: events never travel in a notification.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import structlog
from sqlalchemy import make_url

from runwire_server.events import outbox
from runwire_server.events.committed import CommittedHere
from runwire_server.events.values import Event
from runwire_server.storage.database import Database

log = structlog.get_logger("runwire.replicas")

CHUNK = 1000


class EventBridge:
    """Delivers every committed event, from any replica, to this server's watchers in order."""

    def __init__(
        self, db: Database, publish: Callable[[list[Event]], None], here: CommittedHere
    ) -> None:
        self._db = db
        self._publish = publish
        self._here = here
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runwire-events", daemon=True)
        self._last = db.run_sync(outbox.global_last_seq, write=False)
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _conninfo(self) -> str:
        url = make_url(self._db.url.render_as_string(hide_password=False))
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo(), autocommit=True) as connection:
                    connection.execute(f"LISTEN {outbox.CHANNEL}")
                    self.listening.set()
                    backoff = 0.5
                    self._catch_up()  # whatever committed while not listening
                    while not self._stop.is_set():
                        # The timeout only lets the loop notice stop(); it queries nothing.
                        for notice in connection.notifies(timeout=0.5, stop_after=1):
                            self._catch_up(_sequence(notice.payload))
            except Exception as exc:  # the database went away: reconnect, then catch up
                self.listening.clear()
                log.warning("replicas.listener_lost", error=str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _catch_up(self, upto: int | None = None) -> None:
        """Deliver the events up to `upto` (a notification's number), or every one committed."""
        if upto is not None:
            if upto <= self._last:
                return
            known = self._here.take(self._last, upto)
            if known is not None:
                self._last = upto
                self._publish(known)
                return
        while True:
            events = self._db.run_sync(
                lambda s: outbox.events_since(s, self._last, CHUNK), write=False
            )
            if not events:
                return
            self._last = events[-1].seq
            self._here.forget(self._last)
            self._publish(events)
            if len(events) < CHUNK:
                return


def _sequence(payload: str) -> int | None:
    return int(payload) if payload.isdigit() else None


def wait_listening(bridge: EventBridge, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not bridge.listening.wait(0.05):
        if time.monotonic() > deadline:
            raise TimeoutError("the event listener did not connect")
