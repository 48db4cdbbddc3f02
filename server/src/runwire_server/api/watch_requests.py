"""WatchFlowRun and WatchFlowRuns requests, unpacked into the watch logic's options."""

from __future__ import annotations

from typing import Any

from runwire.v1 import watch_pb2
from runwire_server.errors import InvalidArgument
from runwire_server.events.watch import RunsWatchOptions, WatchOptions
from runwire_server.ids import require_id
from runwire_server.settings import Settings
from runwire_server.wire_scalars import to_timedelta


def watch_options(request: watch_pb2.WatchFlowRunRequest, settings: Settings) -> WatchOptions:
    heartbeat = _heartbeat_seconds(request, settings)
    after = _after_cursor(request)
    return WatchOptions(
        flow_run_id=require_id(request.flow_run_id, "flow_run_id"),
        states=request.stream_states if request.HasField("stream_states") else True,
        logs=request.stream_logs if request.HasField("stream_logs") else True,
        task_runs=request.include_task_runs,
        after_cursor=after,
        heartbeat_seconds=heartbeat,
    )


def runs_watch_options(
    request: watch_pb2.WatchFlowRunsRequest, settings: Settings
) -> RunsWatchOptions:
    heartbeat = _heartbeat_seconds(request, settings)
    return RunsWatchOptions(
        filter=request.filter, after_cursor=_after_cursor(request), heartbeat_seconds=heartbeat
    )


def _after_cursor(request: Any) -> int | None:
    if not request.HasField("after_cursor"):
        return None
    if request.after_cursor < 0:
        raise InvalidArgument("after_cursor", "must not be negative")
    return int(request.after_cursor)


def _heartbeat_seconds(request: Any, settings: Settings) -> float:
    heartbeat = settings.watch_heartbeat_seconds
    if request.HasField("heartbeat_interval"):
        heartbeat = to_timedelta(request.heartbeat_interval, "heartbeat_interval").total_seconds()
        low, high = settings.watch_min_heartbeat_seconds, settings.watch_max_heartbeat_seconds
        if not low <= heartbeat <= high:
            raise InvalidArgument("heartbeat_interval", f"must be between {low} and {high} seconds")
    return heartbeat
