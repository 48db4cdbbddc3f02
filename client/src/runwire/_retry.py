"""When a failed call is sent again, and how long to wait first: one policy for both clients.

Only UNAVAILABLE is retried (AIP-194), and only for calls that are safe to repeat, with
truncated exponential backoff and full jitter so that clients reconnecting together spread out.
A server that is shutting down refuses calls before doing any work and says so: any call may be
sent again then, and its RetryInfo says how long to stay away.
"""

from __future__ import annotations

import random

from runwire.errors import OutOfRange, RunwireError, Unavailable

SHUTTING_DOWN = "SERVER_SHUTTING_DOWN"  # the reason of a call refused before any work
CURSOR_EXPIRED = "CURSOR_EXPIRED"


def may_retry(error: RunwireError, *, idempotent: bool, attempt: int, retries: int) -> bool:
    """Whether a unary call that failed with `error` on try `attempt` (from 0) goes again."""
    safe = idempotent or error.reason == SHUTTING_DOWN
    return isinstance(error, Unavailable) and safe and attempt < retries


def call_backoff(attempt: int) -> float:
    """Seconds to wait before sending a unary call again."""
    return random.uniform(0, min(8.0, 0.2 * 2**attempt))


def stream_backoff(attempt: int) -> float:
    """Seconds to wait before opening a dropped watch again."""
    return random.uniform(0, min(5.0, 0.2 * 2**attempt))


def too_long_away(away: float, deadline_seconds: float, address: str) -> Unavailable | None:
    """The error for a call whose deadline ends before the server asked callers to return."""
    if away < deadline_seconds:
        return None
    return Unavailable(
        f"the server at {address} is shutting down and asked callers to wait "
        f"{away:.1f}s, longer than this call's deadline",
        reason=SHUTTING_DOWN,
    )


def cursor_expired(error: RunwireError) -> bool:
    """A watch cursor older than the events the server keeps (retention)."""
    return isinstance(error, OutOfRange) and error.reason == CURSOR_EXPIRED
