"""The server's time: every timestamp it writes comes from here."""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now() -> datetime:
    # Standard-library datetimes: every transition takes several, and pendulum's are slower
    # to make, compare, subtract and store (pendulum serves where people read times).
    return datetime.now(UTC)
