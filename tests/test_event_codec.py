"""The edge's codec of watch events: what the outbox stores is what a watcher decodes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from runwire.v1 import watch_pb2
from runwire_server.convert.events import EventCodec
from runwire_server.events.values import (
    FlowRunStateChanged,
    LogWritten,
    RunDeleted,
    RunEvent,
    TaskRunStateChanged,
)
from runwire_server.orchestration.states import State, StateType
from runwire_server.records import Log

RUN = uuid.uuid4()
AT = datetime(2026, 12, 3, 8, 30, 15, 123456, tzinfo=UTC)
SCHEDULED = State(
    id=uuid.uuid4(),
    type=StateType.SCHEDULED,
    name="AwaitingRetry",
    timestamp=AT,
    message="retrying",
    details={"scheduled_time": AT, "flow_run_id": str(RUN)},
    result={"serializer": "json", "inline_value": "eyJhIjogMX0="},
)
COMPLETED = State(
    id=uuid.uuid4(),
    type=StateType.COMPLETED,
    name="Completed",
    timestamp=AT,
    result={"serializer": "pickle", "location_uri": "s3://bucket/result"},
)
EVENTS: list[RunEvent] = [
    FlowRunStateChanged(RUN, SCHEDULED),
    FlowRunStateChanged(RUN, COMPLETED),
    TaskRunStateChanged(RUN, uuid.uuid4(), "extract", COMPLETED),
    LogWritten(Log(uuid.uuid4(), RUN, None, "runwire.flow", 20, "hello", AT)),
    LogWritten(Log(uuid.uuid4(), RUN, uuid.uuid4(), "runwire.task", 40, "oops", AT)),
    RunDeleted(RUN),
]


@pytest.mark.parametrize("value", EVENTS, ids=lambda v: type(v).__name__)
def test_an_event_decodes_as_it_was_encoded_with_its_cursor(value: RunEvent) -> None:
    codec = EventCodec()
    payload = codec.numbered(41, codec.body(value))
    assert watch_pb2.WatchFlowRunResponse.FromString(payload).cursor == 41
    assert codec.decode(RUN, payload) == value


def test_a_payload_that_holds_no_event_is_refused() -> None:
    codec = EventCodec()
    with pytest.raises(ValueError, match="holds no event"):
        codec.decode(RUN, watch_pb2.WatchFlowRunResponse(cursor=3).SerializeToString())
