"""Keeping a watch going: where it resumes, when it ends, how long to wait to reconnect."""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

from runwire import _retry
from runwire._plans import Owner, Stream
from runwire.errors import RunwireError, Unavailable
from runwire.v1 import watch_pb2

T = TypeVar("T")
END: Any = object()  # the stream ended for good
RECONNECT: Any = object()  # the server is going away: open the stream again


class Resume(Generic[T]):
    """A watch's progress across the streams opened for it; both clients drive it.

    The driver opens a stream with `request()`, hands each message to `message()` (the value
    to yield, SKIP, END or RECONNECT) and a failure to `failed()`, and before opening again
    waits `delay()` seconds.
    """

    def __init__(self, plan: Stream[T], owner: Owner, address: str) -> None:
        self._plan = plan
        self._owner = owner
        self._address = address
        self.cursor = plan.cursor
        self._down_since: float | None = None
        self._attempt = 0

    def request(self) -> Any:
        return self._plan.request(self.cursor)

    def message(self, message: Any) -> Any:
        self._down_since, self._attempt = None, 0
        if message.WhichOneof("event") == "end":
            if message.end.reason == watch_pb2.StreamEnd.REASON_SERVER_SHUTDOWN:
                return RECONNECT  # the call then ends UNAVAILABLE
            return END
        self.cursor = message.cursor
        return self._plan.select(message, self._owner)

    def failed(self, error: RunwireError) -> bool:
        """True to open the stream again at once; False to wait first; raises what the caller
        must see."""
        if _retry.cursor_expired(error) and self._plan.restart:
            self.cursor = None
            return True
        if not isinstance(error, Unavailable):
            raise error from None  # the gRPC error it maps says nothing more
        return False

    def delay(self, away: float) -> float:
        """Seconds to wait before opening again (at least `away`, what the server asked for);
        raises Unavailable once the server has been gone for longer than the plan allows."""
        now = time.monotonic()
        self._down_since = self._down_since or now
        if now - self._down_since > self._plan.reconnect_for.total_seconds():
            raise Unavailable(f"could not reconnect to {self._address} to keep watching")
        wait = max(away, _retry.stream_backoff(self._attempt))
        self._attempt += 1
        return wait
