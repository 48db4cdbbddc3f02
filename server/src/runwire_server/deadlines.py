"""The current call's deadline, set by the edge that received the call and honoured by the
database (storage.database): work not yet begun when it passes is not begun, a statement still
running is interrupted, and a wait for a lock gives up, so a call the client has abandoned
stops costing the database."""

from __future__ import annotations

import contextvars

# time.monotonic() seconds, or None for a call without a deadline.
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "call_deadline", default=None
)
