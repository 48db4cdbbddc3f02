"""Flows, deployments, runs, logs, limits and graph nodes as protobuf messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format

from runwire.v1 import (
    concurrency_limit_pb2,
    deployment_pb2,
    flow_pb2,
    flow_run_pb2,
    graph_pb2,
    log_pb2,
    orchestration_pb2,
    task_run_pb2,
)
from runwire_server import records
from runwire_server.convert.message_cache import MessageCache
from runwire_server.convert.scalars import (
    SubmessageFields,
    dict_to_struct,
    duration,
    duration_fields,
    format_id,
    given,
    timestamp_fields,
)
from runwire_server.convert.states import (
    state_row_to_proto,
    state_to_proto,
)
from runwire_server.errors import InvalidArgument
from runwire_server.orchestration import bookkeeping
from runwire_server.orchestration.context import Status
from runwire_server.run_records import FlowRunRecord, RunRecord, TaskRunRecord
from runwire_server.wire_scalars import (
    to_timedelta,
)


def flow_to_proto(row: records.Flow) -> flow_pb2.Flow:
    return flow_pb2.Flow(
        id=str(row.id),
        name=row.name,
        project_name=row.project_name or "",
        storage_type=row.storage_type or "",
        tags=row.tags,
        labels=row.labels,
        created=timestamp_fields(row.created),
        updated=timestamp_fields(row.updated),
    )


def deployment_to_proto(row: records.Deployment) -> deployment_pb2.Deployment:
    return deployment_pb2.Deployment(
        id=str(row.id),
        name=row.name,
        flow_id=str(row.flow_id),
        tags=row.tags,
        work_pool_name=row.work_pool_name or "",
        work_queue_name=row.work_queue_name or "",
        paused=row.paused,
        concurrency_limit=row.concurrency_limit,
        collision_strategy=deployment_pb2.CollisionStrategy.Value(
            f"COLLISION_STRATEGY_{row.collision_strategy}"
        ),
        created=timestamp_fields(row.created),
        updated=timestamp_fields(row.updated),
    )


def flow_run_policy_from_proto(policy: flow_run_pb2.FlowRunPolicy, field: str) -> dict[str, Any]:
    out: dict[str, Any] = {"pause_keys": list(policy.pause_keys), "resuming": policy.resuming}
    if policy.HasField("retries"):
        if policy.retries < 0:
            raise InvalidArgument(f"{field}.retries", "must not be negative")
        out["retries"] = policy.retries
    if policy.HasField("retry_delay"):
        seconds = to_timedelta(policy.retry_delay, f"{field}.retry_delay").total_seconds()
        if seconds < 0:
            raise InvalidArgument(f"{field}.retry_delay", "must not be negative")
        out["retry_delay"] = seconds
    return out


def flow_run_policy_to_proto(policy: dict[str, Any]) -> flow_run_pb2.FlowRunPolicy:
    delay = policy.get("retry_delay")
    return flow_run_pb2.FlowRunPolicy(
        pause_keys=policy.get("pause_keys", []),
        resuming=policy.get("resuming", False),
        retries=policy.get("retries"),
        retry_delay=None if delay is None else duration_fields(delay),
    )


def run_timing(row: RunRecord, at: datetime) -> dict[str, Any]:
    """The counters and times flow runs and task runs share, as message fields."""
    return {
        "run_count": row.run_count,
        "expected_start_time": timestamp_fields(row.expected_start_time),
        "next_scheduled_start_time": timestamp_fields(row.next_scheduled_start_time),
        "start_time": timestamp_fields(row.start_time),
        "end_time": timestamp_fields(row.end_time),
        "total_run_time": duration_fields(row.total_run_time),
        "estimated_run_time": duration_fields(bookkeeping.estimated_run_time(row, at)),
        "estimated_start_time_delta": duration_fields(
            bookkeeping.estimated_start_time_delta(row, at)
        ),
        "lease_expire_time": timestamp_fields(row.lease_expires),
    }


def _flow_run_to_proto(row: FlowRunRecord, at: datetime) -> flow_run_pb2.FlowRun:
    created_by = None
    if row.created_by_id or row.created_by_type or row.created_by_display_value:
        created_by = flow_run_pb2.CreatedBy(
            id=row.created_by_id or "",
            type=row.created_by_type or "",
            display_value=row.created_by_display_value or "",
        )
    fields = {
        "id": str(row.id),
        "name": row.name,
        "flow_id": str(row.flow_id),
        "deployment_id": row.deployment_id and str(row.deployment_id),
        "work_pool_name": row.work_pool_name,
        "work_queue_name": row.work_queue_name,
        "parameters": dict_to_struct(row.parameters),
        "context": dict_to_struct(row.context),
        "run_config": dict_to_struct(row.run_config),
        "tags": row.tags,
        "labels": row.labels,
        "idempotency_key": row.idempotency_key,
        "parent_task_run_id": row.parent_task_run_id and str(row.parent_task_run_id),
        "state": state_row_to_proto(row.state),
        **run_timing(row, at),
        "empirical_policy": flow_run_policy_to_proto(row.empirical_policy),
        "flow_version": row.flow_version,
        "infrastructure_pid": row.infrastructure_pid,
        "created_by": created_by,
        "created": timestamp_fields(row.created),
        "updated": timestamp_fields(row.updated),
    }
    return flow_run_pb2.FlowRun(**given(fields))


flow_run_to_proto = MessageCache(_flow_run_to_proto, 2048)


def outcome_to_proto(outcome: Any) -> orchestration_pb2.OrchestrationResult:
    """An orchestration Outcome (services.states) as the response message."""
    details = orchestration_pb2.OrchestrationDetails(reason=outcome.reason)
    if outcome.delay_seconds is not None:
        details.delay.CopyFrom(duration(outcome.delay_seconds))
    return orchestration_pb2.OrchestrationResult(
        status=_STATUS_TO_PROTO[outcome.status],
        state=None if outcome.state is None else state_to_proto(outcome.state),
        state_written=outcome.written,
        details=details,
    )


_STATUS_TO_PROTO = {
    s: orchestration_pb2.SetStateStatus.Value(f"SET_STATE_STATUS_{s.value}") for s in Status
}


def task_run_policy_from_proto(policy: task_run_pb2.TaskRunPolicy, field: str) -> dict[str, Any]:
    if policy.retries < 0:
        raise InvalidArgument(f"{field}.retries", "must not be negative")
    delays = [
        to_timedelta(d, f"{field}.retry_delays[{i}]").total_seconds()
        for i, d in enumerate(policy.retry_delays)
    ]
    if any(d < 0 for d in delays):
        raise InvalidArgument(f"{field}.retry_delays", "must not be negative")
    return {"retries": policy.retries, "retry_delays": delays}


# A task input is stored as json_format writes it (camelCase names, enum names): these are all
# its fields, which a constructor takes as they are.
_TASK_INPUT_FIELDS = {
    "inputType": "input_type",
    "taskRunId": "task_run_id",
    "parameterName": "parameter_name",
    "constantType": "constant_type",
}


def _task_input(stored: dict[str, Any]) -> SubmessageFields:
    try:
        return {_TASK_INPUT_FIELDS[name]: value for name, value in stored.items()}
    except KeyError:  # a field this table does not know: json_format knows every one
        return json_format.ParseDict(stored, task_run_pb2.TaskInput())


def _task_run_to_proto(row: TaskRunRecord, at: datetime) -> task_run_pb2.TaskRun:
    policy = row.empirical_policy
    inputs: SubmessageFields = {
        name: {"inputs": [_task_input(i) for i in values]}
        for name, values in row.task_inputs.items()
    }
    fields = {
        "id": str(row.id),
        "flow_run_id": str(row.flow_run_id),
        "task_key": row.task_key,
        "name": row.name,
        "dynamic_key": row.dynamic_key,
        "map_index": row.map_index,
        "tags": row.tags,
        "cache_key": row.cache_key,
        "cache_expiration": timestamp_fields(row.cache_expiration),
        "task_version": row.task_version,
        "empirical_policy": task_run_pb2.TaskRunPolicy(
            retries=policy.get("retries", 0),
            retry_delays=[duration_fields(d) for d in policy.get("retry_delays", [])],
        ),
        "task_inputs": inputs,
        "state": state_row_to_proto(row.state),
        "flow_run_run_count": row.flow_run_run_count,
        **run_timing(row, at),
        "created": timestamp_fields(row.created),
        "updated": timestamp_fields(row.updated),
    }
    return task_run_pb2.TaskRun(**given(fields))


task_run_to_proto = MessageCache(_task_run_to_proto, 2048)


def keep_run_messages(capacity: int) -> None:
    """How many finished runs of each kind keep their messages between reads."""
    flow_run_to_proto.keep(capacity)
    task_run_to_proto.keep(capacity)


def concurrency_limit_to_proto(
    row: records.ConcurrencyLimit,
) -> concurrency_limit_pb2.ConcurrencyLimit:
    return concurrency_limit_pb2.ConcurrencyLimit(
        id=str(row.id),
        tag=row.tag,
        concurrency_limit=row.concurrency_limit,
        active_slots=row.active_slots,
        created=timestamp_fields(row.created),
        updated=timestamp_fields(row.updated),
    )


def log_to_proto(row: records.Log) -> log_pb2.Log:
    return log_pb2.Log(**log_fields(row))


def log_fields(row: records.Log) -> SubmessageFields:
    """A log line as the fields of a Log message (for a message that holds one)."""
    return {
        "id": str(row.id),
        "flow_run_id": str(row.flow_run_id),
        "task_run_id": format_id(row.task_run_id),
        "name": row.name,
        "level": row.level,
        "message": row.message,
        "timestamp": timestamp_fields(row.timestamp),
    }


def graph_node_to_proto(row: TaskRunRecord, at: datetime) -> graph_pb2.GraphNode:
    upstream: list[str] = []
    for inputs in row.task_inputs.values():
        for source in inputs:
            task_run_id = source.get("taskRunId")
            if task_run_id and task_run_id not in upstream:
                upstream.append(task_run_id)
    state = row.state
    untrackable = bool(state and (state.state_details or {}).get("untrackable_result"))
    timing = run_timing(row, at)
    return graph_pb2.GraphNode(
        id=str(row.id),
        name=row.name,
        upstream_dependencies=upstream,
        state=state_row_to_proto(state),
        expected_start_time=timing["expected_start_time"],
        start_time=timing["start_time"],
        end_time=timing["end_time"],
        total_run_time=timing["total_run_time"],
        estimated_run_time=timing["estimated_run_time"],
        untrackable_result=untrackable,
    )
