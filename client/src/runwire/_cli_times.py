"""Times as the command line reads and shows them: in the user's words and clock, with
pendulum (imported by the commands that need it, not by every command)."""

from __future__ import annotations

import re
from datetime import datetime


def wall_time(value: datetime | None) -> str:
    """A time as the user's clock shows it."""
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


AGO = re.compile(r"(\d+)\s*(second|minute|hour|day|week|month|year)s?\s+ago", re.IGNORECASE)


def moment(text: str) -> datetime:
    """A time the user typed: an ISO 8601 time or date (UTC unless it names an offset), or
    how long ago, such as "2 hours ago"."""
    import pendulum

    ago = AGO.fullmatch(text.strip())
    if ago:
        amount, unit = int(ago[1]), ago[2].lower()
        return pendulum.now("UTC").subtract(**{f"{unit}s": amount})
    try:
        parsed = pendulum.parse(text.strip())
    except ValueError:
        parsed = None
    if not isinstance(parsed, datetime):
        raise ValueError(f"{text!r} is not a time: give 2026-11-01T08:00 or '2 hours ago'")
    return parsed


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long a run ran, in words."""
    import pendulum

    if start is None or end is None:
        return ""
    seconds = round((end - start).total_seconds())
    if seconds < 1:
        return "less than a second"
    return pendulum.duration(seconds=seconds).in_words()
