"""watch_flow_run: a run's states and logs as log lines, live, until it finishes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from runwire.states import State
from runwire.v1 import flow_run_service_pb2
from runwire.views import FlowRunLog, _client

if TYPE_CHECKING:
    from runwire.client import Client


def _ago(moment: datetime) -> str:
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return f"{seconds} second{'s' if seconds != 1 else ''} ago"


def watch_flow_run(
    flow_run_id: str,
    stream_states: bool = True,
    stream_logs: bool = True,
    max_duration: timedelta = timedelta(hours=12),
    *,
    client: Client | None = None,
) -> Iterator[FlowRunLog]:
    """Yield the run's state changes (as "Entered state <Name>: message" lines) and its logs,
    oldest first, until the run finishes.

    Unlike the reference, nothing is polled: the server pushes events, and a dropped
    connection or a restarted server is resumed from the last event seen, so every line is
    yielded exactly once.
    """
    c = _client(client)
    run = c.call(
        c.flow_runs.GetFlowRun, flow_run_service_pb2.GetFlowRunRequest(flow_run_id=flow_run_id)
    ).flow_run
    current = State.from_proto(run.state)
    if current.is_finished():
        if stream_states:
            updated = run.updated.ToDatetime(tzinfo=UTC)
            yield FlowRunLog(
                datetime.now(UTC), logging.INFO, f"Your flow run finished {_ago(updated)}"
            )
        return
    started = time.monotonic()
    for message in c.watch(
        flow_run_id, stream_states=stream_states, stream_logs=stream_logs, after_cursor=0
    ):
        if time.monotonic() - started > max_duration.total_seconds():
            hours = max_duration.total_seconds() / 3600
            raise RuntimeError(
                f"`watch_flow_run` timed out after {hours:g} hours of waiting for completion. "
                f"Your flow run is still in state: {current!r}"
            )
        kind = message.WhichOneof("event")
        if kind == "flow_run_state":
            current = State.from_proto(message.flow_run_state.state)
            yield FlowRunLog(
                current.timestamp,
                logging.INFO,
                f"Entered state <{current.name}>: {current.message}",
            )
        elif kind == "log":
            yield FlowRunLog.from_proto(message.log)
