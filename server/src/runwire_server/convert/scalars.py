"""Times, durations, documents and ids between protobuf and Python values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from runwire_server.clock import EPOCH
from runwire_server.errors import InvalidArgument

# Timestamp.FromDatetime and Duration.FromTimedelta are pure Python; whole-number arithmetic on
# the timedelta gives the same normalized messages for less.


def timestamp(value: datetime | None) -> Timestamp | None:
    fields = timestamp_fields(value)
    return None if fields is None else Timestamp(**fields)


def duration(value: timedelta | float) -> Duration:
    return Duration(**duration_fields(value))


# A message's constructor takes a submessage as a dict of its fields for a third of what
# building the submessage and handing it over costs, and a page of runs sets ten of them a run:
# the converters pass these dicts. The generated stubs know only the message classes there, so
# the dicts are typed as Any.
SubmessageFields = Any


def given(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields that hold something: a constructor takes as long over a field given None or
    an empty string (its default) as over one with a value, and a run has many such fields."""
    return {name: value for name, value in fields.items() if value is not None and value != ""}


def timestamp_fields(value: datetime | None) -> SubmessageFields:
    """A time as the fields of a Timestamp."""
    if value is None:
        return None
    if value.tzinfo is None:  # the storage layer's naive datetimes are UTC
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    # timedelta keeps seconds and microseconds non-negative, as Timestamp wants its nanos.
    return {"seconds": delta.days * 86_400 + delta.seconds, "nanos": delta.microseconds * 1000}


def duration_fields(value: timedelta | float) -> SubmessageFields:
    """A length of time (or seconds) as the fields of a Duration."""
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    # Duration wants seconds and nanos of one sign: split the magnitude, then sign both.
    seconds, rest = divmod(abs(micros), 1_000_000)
    sign = -1 if micros < 0 else 1
    return {"seconds": sign * seconds, "nanos": sign * rest * 1000}


def struct_to_dict(value: struct_pb2.Struct, field: str) -> dict[str, Any]:
    """A Struct as JSON-ready data; values no database can keep are refused by field."""
    try:
        out = json_format.MessageToDict(value)
    except ValueError as exc:  # NaN or infinite numbers
        raise InvalidArgument(field, str(exc)) from None
    if "\\u0000" in json.dumps(out):
        raise InvalidArgument(field, "must not contain NUL characters")
    return out


def dict_to_struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out


def format_id(value: Any) -> str:
    return "" if value is None else str(value)
