"""Runs and their states as services return them, read on the fast statement path
(storage.run_rows): plain objects
holding a row's columns under their model's names, typed column by column.

They are not dataclasses: one is made for every run a list returns and on every state change,
and filling an instance's dictionary from the row costs less than setting a dataclass's fields
one by one. A state change updates its run's record in place, within its unit of work; the
annotations are checked against the tables' columns by a test."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from runwire_server.orchestration.states import State, StateType


class Record:
    """A row's columns as attributes."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)


class StateRecord(Record):
    """One state row of a flow run or a task run."""

    id: uuid.UUID
    type: str  # a StateType value
    name: str
    timestamp: datetime
    message: str | None
    state_details: dict[str, Any]  # StateDetails fields, times as ISO text
    result: dict[str, Any] | None

    def __eq__(self, other: object) -> bool:
        """Equal columns (convert.message_cache compares runs' records with their states)."""
        return type(other) is StateRecord and other.__dict__ == self.__dict__


class RunRecord(Record):
    """The columns both kinds of run have, their tags (sorted) and their current state."""

    id: uuid.UUID
    name: str
    created: datetime
    updated: datetime
    state_id: uuid.UUID | None
    state_type: str | None
    state_name: str | None
    state_timestamp: datetime | None
    run_count: int
    expected_start_time: datetime | None
    next_scheduled_start_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    total_run_time: float  # seconds
    empirical_policy: dict[str, Any]
    lease_expires: datetime | None
    lease_seconds: float | None
    tags: list[str]
    state: StateRecord | None


class FlowRunRecord(RunRecord):
    flow_id: uuid.UUID
    deployment_id: uuid.UUID | None
    work_pool_name: str | None
    work_queue_name: str | None
    parameters: dict[str, Any]
    context: dict[str, Any]
    run_config: dict[str, Any] | None
    labels: dict[str, Any]
    idempotency_key: str | None
    parent_task_run_id: uuid.UUID | None
    flow_version: str | None
    created_by_id: str | None
    created_by_type: str | None
    created_by_display_value: str | None
    infrastructure_pid: str | None


class TaskRunRecord(RunRecord):
    flow_run_id: uuid.UUID
    task_key: str
    dynamic_key: str
    map_index: int
    cache_key: str | None
    cache_expiration: datetime | None
    task_version: str | None
    task_inputs: dict[str, Any]
    flow_run_run_count: int


# The state details that are times: stored as ISO text in the JSON document.
TIME_DETAILS = ("scheduled_time", "cache_expiration", "pause_timeout")
# The state details that are JSON documents of their own (Structs in the contract).
STRUCT_DETAILS = ("run_input_schema", "run_input")


def details_to_json(details: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in details.items()}


def details_from_json(details: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (datetime.fromisoformat(v) if k in TIME_DETAILS and isinstance(v, str) else v)
        for k, v in details.items()
    }


class StateColumns(Protocol):
    """A state row, as a record or as the ORM reads it."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def message(self) -> str | None: ...
    @property
    def state_details(self) -> dict[str, Any]: ...
    @property
    def result(self) -> dict[str, Any] | None: ...


def state_from_row(row: StateColumns) -> State:
    return State(
        id=row.id,
        type=StateType(row.type),
        name=row.name,
        timestamp=row.timestamp,
        message=row.message or "",
        details=details_from_json(row.state_details),
        result=row.result,
    )
