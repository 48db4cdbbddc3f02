"""watch_flow_run: a run's states and logs as log lines, live, until it finishes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from runwire._values import FlowRunLog
from runwire.views import ViewClient, current_client


def watch_flow_run(
    flow_run_id: str,
    stream_states: bool = True,
    stream_logs: bool = True,
    max_duration: timedelta = timedelta(hours=12),
    *,
    client: ViewClient | None = None,
) -> Iterator[FlowRunLog]:
    """Yield the run's state changes (as "Entered state <Name>: message" lines) and its logs,
    oldest first, until the run finishes: `Client.watch_flow_run` with `client`, or the
    current client (`with Client(...) as client:`).

    Unlike the reference, nothing is polled: the server pushes events, and a dropped
    connection or a restarted server is resumed from the last event seen, so every line is
    yielded exactly once.
    """
    watcher = current_client(client)
    yield from watcher.watch_flow_run(flow_run_id, stream_states, stream_logs, max_duration)
