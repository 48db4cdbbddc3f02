"""The one place that converts between protobuf messages, domain values and stored rows."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from runwire.v1 import (
    concurrency_limit_pb2,
    deployment_pb2,
    flow_pb2,
    flow_run_pb2,
    graph_pb2,
    log_pb2,
    orchestration_pb2,
    state_pb2,
    task_run_pb2,
)
from runwire_server.clock import EPOCH
from runwire_server.errors import InvalidArgument
from runwire_server.orchestration import bookkeeping
from runwire_server.orchestration.context import Status
from runwire_server.orchestration.states import State, StateType
from runwire_server.storage import models as m
from runwire_server.storage.run_rows import Record
from runwire_server.validation import no_nul
from runwire_server.wire_scalars import (
    TYPE_TO_PROTO,
    state_type_from_proto,
    to_datetime,
    to_timedelta,
)

_TIME_DETAILS = ("scheduled_time", "cache_expiration", "pause_timeout")


# --- scalars -----------------------------------------------------------------------------------


# Timestamp.FromDatetime and Duration.FromTimedelta are pure Python; whole-number arithmetic on
# the timedelta gives the same normalized messages for less.


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:  # the storage layer's naive datetimes are UTC
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    # timedelta keeps seconds and microseconds non-negative, as Timestamp wants its nanos.
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def duration(value: timedelta | float) -> Duration:
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    # Duration wants seconds and nanos of one sign: split the magnitude, then sign both.
    seconds, rest = divmod(abs(micros), 1_000_000)
    sign = -1 if micros < 0 else 1
    return Duration(seconds=sign * seconds, nanos=sign * rest * 1000)


def struct_to_dict(value: struct_pb2.Struct, field: str) -> dict[str, Any]:
    """A Struct as JSON-ready data; values no database can keep are refused by field."""
    try:
        out = json_format.MessageToDict(value)
    except ValueError as exc:  # NaN or infinite numbers
        raise InvalidArgument(field, str(exc)) from None
    if "\\u0000" in json.dumps(out):
        raise InvalidArgument(field, "must not contain NUL characters")
    return out


def dict_to_struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out


# --- states ------------------------------------------------------------------------------------


def details_from_proto(details: state_pb2.StateDetails, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in details.ListFields():
        if field.name in _TIME_DETAILS:
            out[field.name] = to_datetime(value, f"{path}.{field.name}")
        else:
            out[field.name] = value
    return out


def details_to_proto(details: dict[str, Any]) -> state_pb2.StateDetails:
    out = state_pb2.StateDetails()
    for name, value in details.items():
        if value is None or name not in out.DESCRIPTOR.fields_by_name:
            continue
        if name in _TIME_DETAILS:
            getattr(out, name).CopyFrom(timestamp(value))
        else:
            setattr(out, name, value)
    return out


def details_to_json(details: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in details.items()}


def details_from_json(details: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (datetime.fromisoformat(v) if k in _TIME_DETAILS and isinstance(v, str) else v)
        for k, v in details.items()
    }


def result_from_proto(
    result: state_pb2.ResultReference, field: str, max_inline: int
) -> dict[str, Any]:
    which = result.WhichOneof("storage")
    if which is None:
        raise InvalidArgument(field, "needs inline_value or location_uri")
    if which == "inline_value":
        if len(result.inline_value) > max_inline:
            raise InvalidArgument(
                f"{field}.inline_value",
                f"is {len(result.inline_value)} bytes; at most {max_inline} are kept inline",
            )
        return {
            "serializer": result.serializer,
            "inline_value": base64.b64encode(result.inline_value).decode(),
        }
    if not result.location_uri.strip():
        raise InvalidArgument(f"{field}.location_uri", "must not be blank")
    return {"serializer": result.serializer, "location_uri": result.location_uri}


def result_to_proto(result: dict[str, Any] | None) -> state_pb2.ResultReference | None:
    return result_reference(result) if result else None


def result_reference(result: dict[str, Any]) -> state_pb2.ResultReference:
    out = state_pb2.ResultReference(serializer=result.get("serializer", ""))
    if "inline_value" in result:
        out.inline_value = base64.b64decode(result["inline_value"])
    elif "location_uri" in result:
        out.location_uri = result["location_uri"]
    return out


def stamp(state: State, at: datetime) -> State:
    """The state as written at `at`: a SCHEDULED state without a time is scheduled for then."""
    if state.type is StateType.SCHEDULED and "scheduled_time" not in state.details:
        return state.replace(timestamp=at, details={**state.details, "scheduled_time": at})
    return state.replace(timestamp=at)


def parse_proposed_state(message: state_pb2.State, field: str, *, max_inline_result: int) -> State:
    """Validate and convert a proposed state once; `stamp` gives it its time later."""
    if not message.ByteSize() and field:
        raise InvalidArgument(field, "is required")
    state_type = state_type_from_proto(message.type, f"{field}.type")
    for name in ("name", "message"):
        no_nul(getattr(message, name), f"{field}.{name}")
    for detail, value in message.state_details.ListFields():
        if isinstance(value, str):
            no_nul(value, f"{field}.state_details.{detail.name}")
    details = details_from_proto(message.state_details, f"{field}.state_details")
    for owned in ("flow_run_id", "task_run_id"):
        details.pop(owned, None)  # the server fills these in
    result = (
        result_from_proto(message.result, f"{field}.result", max_inline_result)
        if message.HasField("result")
        else None
    )
    return State(
        type=state_type,
        name=message.name or state_type.default_name,
        timestamp=datetime.min.replace(tzinfo=UTC),  # set by stamp()
        message=message.message,
        details=details,
        result=result,
    )


def state_from_row(row: m.FlowRunState | m.TaskRunState | Record) -> State:
    return State(
        id=row.id,
        type=StateType(row.type),
        name=row.name,
        timestamp=row.timestamp,
        message=row.message or "",
        details=details_from_json(row.state_details),
        result=row.result,
    )


def state_to_proto(state: State) -> state_pb2.State:
    return state_pb2.State(
        id=format_id(state.id),
        type=TYPE_TO_PROTO[state.type],
        name=state.name,
        timestamp=timestamp(state.timestamp),
        message=state.message,
        state_details=details_to_proto(state.details),
        result=result_to_proto(state.result),
    )


def state_row_to_proto(
    row: m.FlowRunState | m.TaskRunState | Record | None,
) -> state_pb2.State | None:
    return None if row is None else state_row_to_message(row)


def state_row_to_message(row: m.FlowRunState | m.TaskRunState | Record) -> state_pb2.State:
    return state_to_proto(state_from_row(row))


def format_id(value: Any) -> str:
    return "" if value is None else str(value)


# --- resources ---------------------------------------------------------------------------------


def flow_to_proto(row: m.Flow) -> flow_pb2.Flow:
    return flow_pb2.Flow(
        id=str(row.id),
        name=row.name,
        project_name=row.project_name or "",
        storage_type=row.storage_type or "",
        tags=row.tags,
        labels=row.labels,
        created=timestamp(row.created),
        updated=timestamp(row.updated),
    )


def deployment_to_proto(row: m.Deployment) -> deployment_pb2.Deployment:
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
        created=timestamp(row.created),
        updated=timestamp(row.updated),
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
    out = flow_run_pb2.FlowRunPolicy(
        pause_keys=policy.get("pause_keys", []), resuming=policy.get("resuming", False)
    )
    if policy.get("retries") is not None:
        out.retries = policy["retries"]
    if policy.get("retry_delay") is not None:
        out.retry_delay.CopyFrom(duration(policy["retry_delay"]))
    return out


def run_timing(row: m.FlowRun | m.TaskRun | Record, at: datetime) -> dict[str, Any]:
    """The counters and times flow runs and task runs share, as message fields."""
    return {
        "run_count": row.run_count,
        "expected_start_time": timestamp(row.expected_start_time),
        "next_scheduled_start_time": timestamp(row.next_scheduled_start_time),
        "start_time": timestamp(row.start_time),
        "end_time": timestamp(row.end_time),
        "total_run_time": duration(row.total_run_time),
        "estimated_run_time": duration(bookkeeping.estimated_run_time(row, at)),
        "estimated_start_time_delta": duration(bookkeeping.estimated_start_time_delta(row, at)),
    }


def flow_run_to_proto(row: m.FlowRun | Record, at: datetime) -> flow_run_pb2.FlowRun:
    created_by = None
    if row.created_by_id or row.created_by_type or row.created_by_display_value:
        created_by = flow_run_pb2.CreatedBy(
            id=row.created_by_id or "",
            type=row.created_by_type or "",
            display_value=row.created_by_display_value or "",
        )
    return flow_run_pb2.FlowRun(
        id=str(row.id),
        name=row.name,
        flow_id=str(row.flow_id),
        deployment_id=format_id(row.deployment_id),
        work_pool_name=row.work_pool_name or "",
        work_queue_name=row.work_queue_name or "",
        parameters=dict_to_struct(row.parameters),
        context=dict_to_struct(row.context),
        run_config=dict_to_struct(row.run_config),
        tags=row.tags,
        labels=row.labels,
        idempotency_key=row.idempotency_key or "",
        parent_task_run_id=format_id(row.parent_task_run_id),
        state=state_row_to_proto(row.state),
        **run_timing(row, at),
        empirical_policy=flow_run_policy_to_proto(row.empirical_policy),
        flow_version=row.flow_version or "",
        infrastructure_pid=row.infrastructure_pid or "",
        created_by=created_by,
        created=timestamp(row.created),
        updated=timestamp(row.updated),
    )


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


def task_run_to_proto(row: m.TaskRun | Record, at: datetime) -> task_run_pb2.TaskRun:
    policy = row.empirical_policy
    inputs = {
        name: task_run_pb2.TaskInputList(
            inputs=[json_format.ParseDict(i, task_run_pb2.TaskInput()) for i in values]
        )
        for name, values in row.task_inputs.items()
    }
    return task_run_pb2.TaskRun(
        id=str(row.id),
        flow_run_id=str(row.flow_run_id),
        task_key=row.task_key,
        name=row.name,
        dynamic_key=row.dynamic_key,
        map_index=row.map_index,
        tags=row.tags,
        cache_key=row.cache_key or "",
        cache_expiration=timestamp(row.cache_expiration),
        task_version=row.task_version or "",
        empirical_policy=task_run_pb2.TaskRunPolicy(
            retries=policy.get("retries", 0),
            retry_delays=[duration(d) for d in policy.get("retry_delays", [])],
        ),
        task_inputs=inputs,
        state=state_row_to_proto(row.state),
        flow_run_run_count=row.flow_run_run_count,
        **run_timing(row, at),
        created=timestamp(row.created),
        updated=timestamp(row.updated),
    )


def concurrency_limit_to_proto(
    row: m.ConcurrencyLimit, active: list[str]
) -> concurrency_limit_pb2.ConcurrencyLimit:
    return concurrency_limit_pb2.ConcurrencyLimit(
        id=str(row.id),
        tag=row.tag,
        concurrency_limit=row.concurrency_limit,
        active_slots=active,
        created=timestamp(row.created),
        updated=timestamp(row.updated),
    )


def log_to_proto(row: m.Log) -> log_pb2.Log:
    return log_pb2.Log(
        id=str(row.id),
        flow_run_id=str(row.flow_run_id),
        task_run_id=format_id(row.task_run_id),
        name=row.name,
        level=row.level,
        message=row.message,
        timestamp=timestamp(row.timestamp),
    )


def graph_node_to_proto(row: m.TaskRun, at: datetime) -> graph_pb2.GraphNode:
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
