"""Logs: the plans of their calls."""

from __future__ import annotations

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
) -> Paged[FlowRunLog]:
    """A run's logs, oldest first; `after` and `before` are inclusive bounds."""
    flt = filters_pb2.LogFilter(
        flow_run_id=filters_pb2.StringFilter(any_of=filters_pb2.StringList(values=[flow_run_id]))
    )
    if after is not None:
        flt.timestamp.after.CopyFrom(timestamp(after))
    if before is not None:
        flt.timestamp.before.CopyFrom(timestamp(before))
    if level_at_least is not None:
        flt.level.ge = level_at_least
    return Paged(
        Rpc(LOGS, "ListLogs"),
        log_service_pb2.ListLogsRequest(filter=flt, page_size=200),
        "logs",
        lambda entry, _: FlowRunLog.from_proto(entry),
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
