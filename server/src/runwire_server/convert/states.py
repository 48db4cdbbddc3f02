"""States, their details and results, between protobuf messages, domain values and rows."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from runwire.v1 import (
    state_pb2,
)
from runwire_server.convert.scalars import (
    SubmessageFields,
    dict_to_struct,
    format_id,
    given,
    struct_to_dict,
    timestamp,
    timestamp_fields,
)
from runwire_server.errors import InvalidArgument
from runwire_server.orchestration.states import State, StateType
from runwire_server.run_records import (
    STRUCT_DETAILS,
    TIME_DETAILS,
    StateRecord,
    details_from_json,
)
from runwire_server.services.leases import Lease
from runwire_server.validation import no_nul
from runwire_server.wire_scalars import (
    TYPE_TO_PROTO,
    state_type_from_proto,
    to_datetime,
)


def details_from_proto(details: state_pb2.StateDetails, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in details.ListFields():
        if field.name in TIME_DETAILS:
            out[field.name] = to_datetime(value, f"{path}.{field.name}")
        elif field.name in STRUCT_DETAILS:
            out[field.name] = struct_to_dict(value, f"{path}.{field.name}")
        else:
            out[field.name] = value
    return out


def details_to_proto(details: dict[str, Any]) -> state_pb2.StateDetails:
    out = state_pb2.StateDetails()
    for name, value in details.items():
        if value is None or name not in out.DESCRIPTOR.fields_by_name:
            continue
        if name in TIME_DETAILS:
            getattr(out, name).CopyFrom(timestamp(value))
        elif name in STRUCT_DETAILS:
            getattr(out, name).CopyFrom(dict_to_struct(value))
        else:
            setattr(out, name, value)
    return out


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


def check_schema(schema: dict[str, Any], field: str) -> None:
    """Refuse a JSON Schema that its own metaschema refuses (draft 2020-12 unless it says)."""
    validator = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidArgument(field, f"is not a valid JSON Schema: {exc.message}") from None


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
    for owned in ("flow_run_id", "task_run_id", "run_input"):
        details.pop(owned, None)  # the server fills these in
    if "run_input_schema" in details:
        if state_type is not StateType.PAUSED:
            raise InvalidArgument(
                f"{field}.state_details.run_input_schema", "is for PAUSED states only"
            )
        check_schema(details["run_input_schema"], f"{field}.state_details.run_input_schema")
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


def lease_fields(lease: Lease) -> dict[str, Any]:
    """A heartbeat's answer, as the fields HeartbeatFlowRunResponse and
    HeartbeatTaskRunResponse share."""
    return {
        "state": None if lease.state is None else state_to_proto(lease.state),
        "lease_expire_time": timestamp(lease.expires),
    }


def state_to_proto(state: State) -> state_pb2.State:
    return state_pb2.State(
        id=format_id(state.id),
        type=TYPE_TO_PROTO[state.type],
        name=state.name,
        timestamp=timestamp_fields(state.timestamp),
        message=state.message,
        state_details=details_to_proto(state.details),
        result=result_to_proto(state.result),
    )


_STORED_TYPE_TO_PROTO = {t.value: proto for t, proto in TYPE_TO_PROTO.items()}
_NO_DETAILS: SubmessageFields = {}  # set, and empty, as details_to_proto({}) gives it


def state_row_to_proto(row: StateRecord | None) -> state_pb2.State | None:
    """A stored state as state_to_proto(state_from_row(row)) gives it, without the State in
    between: every run of a page has one."""
    if row is None:
        return None
    details = row.state_details
    fields = {
        "id": str(row.id),
        "type": _STORED_TYPE_TO_PROTO[row.type],
        "name": row.name,
        "timestamp": timestamp_fields(row.timestamp),
        "message": row.message,
        "state_details": details_to_proto(details_from_json(details)) if details else _NO_DETAILS,
        "result": result_to_proto(row.result),
    }
    return state_pb2.State(**given(fields))
