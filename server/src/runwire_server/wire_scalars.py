"""Scalar values of requests as domain values: times, durations and state types. Shared by the
edge's converter (convert) and the query module (storage.filters), which reads filter messages
as they are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from runwire.v1 import state_pb2
from runwire_server.errors import InvalidArgument
from runwire_server.orchestration.states import StateType

TYPE_TO_PROTO = {t: state_pb2.StateType.Value(f"STATE_TYPE_{t.value}") for t in StateType}
_TYPE_FROM_PROTO = {v: k for k, v in TYPE_TO_PROTO.items()}


def to_datetime(ts: Timestamp, field: str) -> datetime:
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidArgument(field, str(exc)) from None


def to_timedelta(value: Duration, field: str) -> timedelta:
    """A Duration within what it may hold (about ±10,000 years) and what Python can use."""
    try:
        return value.ToTimedelta()
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field, f"is out of range: {exc}") from None


def state_type_from_proto(value: int, field: str) -> StateType:
    try:
        return _TYPE_FROM_PROTO[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(field, "must be a StateType other than UNSPECIFIED") from None
