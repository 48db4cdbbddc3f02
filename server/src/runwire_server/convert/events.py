"""Watch events and stream markers as the watch streams send them (runwire.v1.watch)."""

from __future__ import annotations

import sys
import uuid
from typing import TypeVar

from runwire.v1 import log_pb2, state_pb2, watch_pb2
from runwire_server.convert.resources import log_fields
from runwire_server.convert.scalars import duration
from runwire_server.convert.states import details_from_proto, result_from_proto, state_to_proto
from runwire_server.events.values import (
    CaughtUp,
    End,
    EndReason,
    Event,
    FlowRunStateChanged,
    Heartbeat,
    LogWritten,
    RunDeleted,
    RunEvent,
    TaskRunStateChanged,
    WatchItem,
)
from runwire_server.orchestration.states import State
from runwire_server.records import Log
from runwire_server.wire_scalars import state_type_from_proto, to_datetime

W = watch_pb2.WatchFlowRunResponse
R = watch_pb2.WatchFlowRunsResponse
M = TypeVar("M", W, R)
_END = {
    EndReason.RUN_FINISHED: watch_pb2.StreamEnd.REASON_RUN_FINISHED,
    EndReason.RUN_DELETED: watch_pb2.StreamEnd.REASON_RUN_DELETED,
    EndReason.SERVER_SHUTDOWN: watch_pb2.StreamEnd.REASON_SERVER_SHUTDOWN,
}


class EventCodec:
    """Events as WatchFlowRun sends them: stored so, and sent as stored."""

    def body(self, value: RunEvent) -> bytes:
        return _message(0, value).SerializeToString()

    def numbered(self, seq: int, body: bytes) -> bytes:
        # Two encoded messages one after the other decode as one message with the fields of
        # both, so the cursor need not be set before the body is encoded.
        return W(cursor=seq).SerializeToString() + body

    def decode(self, flow_run_id: uuid.UUID, payload: bytes) -> RunEvent:
        message = W.FromString(payload)
        kind = message.WhichOneof("event")
        if kind == "flow_run_state":
            return FlowRunStateChanged(flow_run_id, _state(message.flow_run_state.state))
        if kind == "task_run_state":
            change = message.task_run_state
            state = _state(change.state)
            return TaskRunStateChanged(
                flow_run_id, uuid.UUID(change.task_run_id), change.task_key, state
            )
        if kind == "log":
            return LogWritten(_log(message.log))
        if kind == "end":
            return RunDeleted(flow_run_id)
        raise ValueError(f"a stored event of run {flow_run_id} holds no event ({kind})")


def _message(seq: int, value: RunEvent) -> W:
    if isinstance(value, FlowRunStateChanged):
        return W(
            cursor=seq,
            flow_run_state=watch_pb2.FlowRunStateChanged(
                flow_run_id=str(value.flow_run_id), state=state_to_proto(value.state)
            ),
        )
    if isinstance(value, TaskRunStateChanged):
        return W(
            cursor=seq,
            task_run_state=watch_pb2.TaskRunStateChanged(
                task_run_id=str(value.task_run_id),
                task_key=value.task_key,
                state=state_to_proto(value.state),
            ),
        )
    if isinstance(value, LogWritten):
        return W(cursor=seq, log=log_fields(value.log))
    return W(cursor=seq, end=watch_pb2.StreamEnd(reason=watch_pb2.StreamEnd.REASON_RUN_DELETED))


def _state(message: state_pb2.State) -> State:
    """A state as the server encoded it (so it is not checked again)."""
    result = None
    if message.HasField("result"):  # the server kept it, so it is within the inline limit
        result = result_from_proto(message.result, "state.result", max_inline=sys.maxsize)
    return State(
        id=uuid.UUID(message.id) if message.id else None,
        type=state_type_from_proto(message.type, "state.type"),
        name=message.name,
        timestamp=to_datetime(message.timestamp, "state.timestamp"),
        message=message.message,
        details=details_from_proto(message.state_details, "state.state_details"),
        result=result,
    )


def _log(message: log_pb2.Log) -> Log:
    return Log(
        id=uuid.UUID(message.id),
        flow_run_id=uuid.UUID(message.flow_run_id),
        task_run_id=uuid.UUID(message.task_run_id) if message.task_run_id else None,
        name=message.name,
        level=message.level,
        message=message.message,
        timestamp=to_datetime(message.timestamp, "log.timestamp"),
    )


def watch_message(item: WatchItem) -> W | bytes:
    """One item of WatchFlowRun: an event goes as the bytes encoded when it committed."""
    if isinstance(item, Event):
        if item.payload:
            return item.payload
        assert item.value is not None  # an event without its bytes is one made to be sent
        return _message(item.seq, item.value)
    return _marker(W, item)


def runs_watch_message(item: WatchItem) -> R:
    """One item of WatchFlowRuns: the state changes of runs, and the markers. A live event is
    converted from its value; one read back from storage, from its payload."""
    if isinstance(item, Event):
        if isinstance(item.value, FlowRunStateChanged):
            change = _message(item.seq, item.value).flow_run_state
        else:
            change = W.FromString(item.payload).flow_run_state
        return R(cursor=item.seq, flow_run_state=change)
    return _marker(R, item)


def _marker(kind: type[M], item: CaughtUp | Heartbeat | End) -> M:
    if isinstance(item, CaughtUp):
        return kind(cursor=item.cursor, caught_up=watch_pb2.CaughtUp())
    if isinstance(item, Heartbeat):
        beat = watch_pb2.Heartbeat()
        if item.time_in_state is not None:
            beat.time_in_state.CopyFrom(duration(item.time_in_state))
        return kind(cursor=item.cursor, heartbeat=beat)
    return kind(cursor=item.cursor, end=watch_pb2.StreamEnd(reason=_END[item.reason]))
