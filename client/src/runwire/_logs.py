"""Logs: the plans of their calls."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from runwire._plans import Paged, Rpc, Unary
from runwire._values import FlowRunLog, timestamp
from runwire.v1 import filters_pb2, log_pb2, log_service_pb2

LOGS = "logs"


def list_logs(
    flow_run_id: str,
    *,
    after: datetime | None = None,
    before: datetime | None = None,
    level_at_least: int | None = None,
    task_run_ids: Sequence[str] | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> Paged[FlowRunLog]:
    """A run's logs, oldest first (or `newest_first`); `after` and `before` are inclusive
    bounds; `task_run_ids`: only the lines these task runs wrote; at most `limit` lines."""
    flt = filters_pb2.LogFilter(
        flow_run_id=filters_pb2.StringFilter(any_of=filters_pb2.StringList(values=[flow_run_id]))
    )
    if task_run_ids is not None:
        flt.task_run_id.any_of.values.extend(task_run_ids)
    if after is not None:
        flt.timestamp.after.CopyFrom(timestamp(after))
    if before is not None:
        flt.timestamp.before.CopyFrom(timestamp(before))
    if level_at_least is not None:
        flt.level.ge = level_at_least
    return Paged(
        Rpc(LOGS, "ListLogs"),
        log_service_pb2.ListLogsRequest(
            filter=flt,
            sort=filters_pb2.LOG_SORT_TIMESTAMP_DESC
            if newest_first
            else filters_pb2.LOG_SORT_TIMESTAMP_ASC,
            page_size=200 if limit is None else max(1, min(limit, 200)),
        ),
        "logs",
        lambda entry, _: FlowRunLog.from_proto(entry),
        limit=limit,
    )


def write_logs(flow_run_id: str, *entries: tuple[int, str], task_run_id: str = "") -> Unary[None]:
    """Store `(level, message)` entries for a run, stamped now."""
    now = timestamp(datetime.now(UTC))
    logs = [
        log_pb2.Log(
            flow_run_id=flow_run_id,
            task_run_id=task_run_id,
            level=level,
            message=message,
            timestamp=now,
        )
        for level, message in entries
    ]
    return Unary(
        Rpc(LOGS, "CreateLogs"),
        log_service_pb2.CreateLogsRequest(logs=logs),
        lambda response, _: None,
        # Sent twice, the lines would be stored twice.
        idempotent=False,
    )
