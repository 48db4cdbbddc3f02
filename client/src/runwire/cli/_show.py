"""How the command line shows values: states in colour, times relative to now in the user's
words, durations short, and times in JSON as ISO 8601 in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
from google.protobuf import json_format
from google.protobuf.message import Message
from pendulum.tz import get_local_timezone
from rich.text import Text

from runwire.cli_output import plain
from runwire.states import State, StateType

# The colour of each state type, as Prefect's UI and Argo's CLI colour them.
STATE_STYLES = {
    StateType.SCHEDULED: "yellow",
    StateType.PENDING: "bright_black",
    StateType.RUNNING: "blue",
    StateType.COMPLETED: "green",
    StateType.FAILED: "red",
    StateType.CRASHED: "bright_red",
    StateType.CANCELLING: "magenta",
    StateType.CANCELLED: "bright_black",
    StateType.PAUSED: "yellow",
}
# A mark before a state, for terminals that show no colour.
STATE_MARKS = {
    StateType.SCHEDULED: "◷",
    StateType.PENDING: "◌",
    StateType.RUNNING: "●",
    StateType.COMPLETED: "✔",
    StateType.FAILED: "✖",
    StateType.CRASHED: "✖",
    StateType.CANCELLING: "⊘",
    StateType.CANCELLED: "⊘",
    StateType.PAUSED: "‖",
}
LEVEL_STYLES = {"DEBUG": "bright_black", "INFO": "", "WARNING": "yellow", "ERROR": "red"}


def state_text(state_type: StateType, name: str | None = None) -> Text:
    """A state as a table shows it: its mark and name, coloured by its type."""
    return Text(
        f"{STATE_MARKS[state_type]} {plain(name or state_type.value.title())}",
        style=STATE_STYLES[state_type],
    )


def level_text(level: str) -> Text:
    """A log level, coloured."""
    return Text(
        f"{level:<8}", style=LEVEL_STYLES.get(level, "bold red" if level == "CRITICAL" else "")
    )


AGO = re.compile(r"(\d+)\s*(second|minute|hour|day|week|month|year)s?\s+ago", re.IGNORECASE)


def moment(text: str) -> datetime:
    """A time the user typed: an ISO 8601 time or date (UTC unless it names an offset), or
    how long ago, such as "2 hours ago"."""
    ago = AGO.fullmatch(text.strip())
    if ago:
        amount, unit = int(ago[1]), ago[2].lower()
        return now().subtract(**{f"{unit}s": amount})
    try:
        parsed = pendulum.parse(text.strip())
    except ValueError:
        parsed = None
    if not isinstance(parsed, datetime):
        raise ValueError(f"{text!r} is not a time: give 2026-11-01T08:00 or '2 hours ago'")
    return parsed


def log_line(when: datetime, level: str, task: str, width: int, message: str) -> Text:
    """A log line as `logs` and `watch` print it: time, level, the task run (in a column
    `width` wide; none when no line has one) and the message."""
    line = Text(f"{clock(when)} ")
    line.append_text(level_text(level))
    if width:
        line.append(f" {plain(task):<{width}}", style="cyan")
    line.append(f" | {plain(message)}")
    return line


def now() -> pendulum.DateTime:
    """The time every relative time and running duration is measured to."""
    return pendulum.now("UTC")


def time_of(message: Message, field: str) -> datetime | None:
    """A timestamp field of a message, or None when it is not set."""
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def ago(moment: datetime | None) -> str:
    """How long ago (or how soon) `moment` is, in words: "3 minutes ago", "in 2 hours"."""
    if moment is None:
        return ""
    current = now()
    words = pendulum.instance(moment).diff_for_humans(current, absolute=True)
    return f"{words} ago" if moment <= current else f"in {words}"


def duration(span: timedelta | float | None) -> str:
    """A duration in the fewest units that say it: 0.4s, 12s, 3m 05s, 2h 10m, 4d 3h."""
    if span is None:
        return ""
    seconds = span.total_seconds() if isinstance(span, timedelta) else span
    if seconds < 10:
        return f"{max(seconds, 0):.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def run_duration(run: Any) -> timedelta | None:
    """How long a flow or task run has run: from its start to its end, or to now while it
    runs; None before it starts."""
    start, end = time_of(run, "start_time"), time_of(run, "end_time")
    if start is None:
        return None
    if end is None:
        if StateType.from_proto(run.state.type) is not StateType.RUNNING:
            return None
        end = now()
    return end - start


def wall_time(moment: datetime | None) -> str:
    """A time as the user's clock shows it."""
    if moment is None:
        return ""
    return pendulum.instance(moment).in_tz(get_local_timezone()).format("YYYY-MM-DD HH:mm:ss")


def clock(moment: datetime) -> str:
    """A time of day on the user's clock, for log lines."""
    return pendulum.instance(moment).in_tz(get_local_timezone()).format("HH:mm:ss.SSS")


def as_json(message: Message) -> dict[str, Any]:
    """A message as the API's JSON form shows it: field names as in the contract, enums by
    name, times as ISO 8601 in UTC ("2026-11-29T03:48:09.978701Z")."""
    value: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return value


def iso(moment: datetime) -> str:
    """A time in UTC as ISO 8601 with a Z, as the API's JSON form writes it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def state_json(state: State) -> dict[str, Any]:
    """A state in the same JSON form as the State message's."""
    document: dict[str, Any] = {
        "id": state.id,
        "type": f"STATE_TYPE_{state.type.value}",
        "name": state.name,
        "timestamp": iso(state.timestamp),
    }
    if state.message:
        document["message"] = state.message
    if state.details:
        document["state_details"] = state.details
    return document
