"""Watching runs: the plans of the watch streams, resumed from their cursors by the clients."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, timedelta
from typing import Any

import pendulum

from runwire._plans import SKIP, Guarded, Owner, Rpc, Stream, Unary
from runwire._values import FlowRunLog, moment
from runwire.states import State
from runwire.v1 import filters_pb2, flow_run_pb2, flow_run_service_pb2, watch_pb2

FLOW_RUNS = "flow_runs"
RECONNECT_FOR = timedelta(minutes=5)


def watch(
    flow_run_id: str,
    *,
    stream_states: bool = True,
    stream_logs: bool = True,
    include_task_runs: bool = False,
    after_cursor: int | None = None,
    reconnect_for: timedelta = RECONNECT_FOR,
) -> Stream[watch_pb2.WatchFlowRunResponse]:
    """The run's events as the server streams them, reconnecting with the last cursor when
    the connection drops or the server restarts, until the run finishes (or is deleted).
    A cursor older than the server keeps events for (retention) starts the watch over from
    the run's current state.

    Markers (caught_up, heartbeats) are passed through; the final StreamEnd is not.
    """

    def request(cursor: int | None) -> watch_pb2.WatchFlowRunRequest:
        out = watch_pb2.WatchFlowRunRequest(
            flow_run_id=flow_run_id,
            stream_states=stream_states,
            stream_logs=stream_logs,
            include_task_runs=include_task_runs,
        )
        if cursor is not None:
            out.after_cursor = cursor
        return out

    return Stream(
        Rpc(FLOW_RUNS, "WatchFlowRun"),
        request,
        lambda message, _: message,
        after_cursor,
        restart=True,
        reconnect_for=reconnect_for,
    )


def _state_change(message: Any, _: Owner) -> tuple[int, str, State]:
    if message.WhichOneof("event") != "flow_run_state":
        return SKIP  # type: ignore[no-any-return]
    change = message.flow_run_state
    return message.cursor, change.flow_run_id, State.from_proto(change.state)


def watch_flow_runs(
    criteria: filters_pb2.FlowRunCriteria | None = None,
    *,
    after_cursor: int | None = None,
    reconnect_for: timedelta = RECONNECT_FOR,
) -> Stream[tuple[int, str, State]]:
    """`(cursor, flow_run_id, state)` for every state change of a matching run, from now
    (or after `after_cursor`, such as a list's watch cursor) on, until the caller stops.
    A dropped connection or a restarted server is resumed after the last change seen.

    Raises OutOfRange (reason CURSOR_EXPIRED) when the cursor is older than the server
    keeps events for: changes were missed, so list the runs again and watch from the
    list's watch_cursor."""

    def request(cursor: int | None) -> watch_pb2.WatchFlowRunsRequest:
        out = watch_pb2.WatchFlowRunsRequest(filter=criteria)
        if cursor is not None:
            out.after_cursor = cursor
        return out

    return Stream(
        Rpc(FLOW_RUNS, "WatchFlowRuns"),
        request,
        _state_change,
        after_cursor,
        restart=False,
        reconnect_for=reconnect_for,
    )


def watch_flow_run(
    flow_run_id: str,
    stream_states: bool = True,
    stream_logs: bool = True,
    max_duration: timedelta = timedelta(hours=12),
) -> Guarded[flow_run_pb2.FlowRun, FlowRunLog]:
    """The run's state changes (as "Entered state <Name>: message" lines) and its logs,
    oldest first, until the run finishes.

    Unlike the reference, nothing is polled: the server pushes events, and a dropped
    connection or a restarted server is resumed from the last event seen, so every line is
    yielded exactly once. A run that has already finished gives one line saying when.
    """

    def then(run: flow_run_pb2.FlowRun) -> Stream[FlowRunLog] | Sequence[FlowRunLog]:
        current = State.from_proto(run.state)
        if current.is_finished():
            if not stream_states:
                return []
            ago = moment(run.updated.ToDatetime(tzinfo=UTC)).diff_for_humans()
            return [FlowRunLog(pendulum.now("UTC"), logging.INFO, f"Your flow run finished {ago}")]
        started = time.monotonic()

        def select(message: Any, _: Owner) -> FlowRunLog:
            nonlocal current
            if time.monotonic() - started > max_duration.total_seconds():
                hours = max_duration.total_seconds() / 3600
                raise RuntimeError(
                    f"`watch_flow_run` timed out after {hours:g} hours of waiting for "
                    f"completion. Your flow run is still in state: {current!r}"
                )
            kind = message.WhichOneof("event")
            if kind == "flow_run_state":
                current = State.from_proto(message.flow_run_state.state)
                return FlowRunLog(
                    moment(current.timestamp),
                    logging.INFO,
                    f"Entered state <{current.name}>: {current.message}",
                )
            if kind == "log":
                return FlowRunLog.from_proto(message.log)
            return SKIP  # type: ignore[no-any-return]

        stream = watch(
            flow_run_id, stream_states=stream_states, stream_logs=stream_logs, after_cursor=0
        )
        return Stream(
            stream.rpc, stream.request, select, 0, restart=True, reconnect_for=RECONNECT_FOR
        )

    return Guarded(
        Unary(
            Rpc(FLOW_RUNS, "GetFlowRun"),
            flow_run_service_pb2.GetFlowRunRequest(flow_run_id=flow_run_id),
            lambda response, _: response.flow_run,
        ),
        then,
    )
