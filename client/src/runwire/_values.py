"""The client's value types: what calls return (flows, log lines, deployments, ...), and the
states callers propose. Times that users read are `pendulum.DateTime` values, in UTC."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pendulum
from google.protobuf import duration_pb2, timestamp_pb2

from runwire.states import Result, State, StateType
from runwire.v1 import (
    concurrency_limit_pb2,
    deployment_pb2,
    flow_pb2,
    graph_pb2,
    history_pb2,
    log_pb2,
    orchestration_pb2,
    server_service_pb2,
    state_pb2,
)


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp; a naive datetime is taken as UTC."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return out


def moment(value: datetime) -> pendulum.DateTime:
    """A datetime as pendulum's, in UTC."""
    return pendulum.instance(value.astimezone(UTC))


class FlowRunLog(NamedTuple):
    """One log line (or a state change rendered as one); sorts by time, then level."""

    timestamp: pendulum.DateTime
    level: int
    message: str
    name: str = ""
    task_run_id: str = ""

    @classmethod
    def from_proto(cls, message: log_pb2.Log) -> FlowRunLog:
        """The line of a Log message."""
        return cls(
            timestamp=moment(message.timestamp.ToDatetime(tzinfo=UTC)),
            level=message.level,
            message=message.message,
            name=message.name,
            task_run_id=message.task_run_id,
        )

    @property
    def level_name(self) -> str:
        """The level's name, such as INFO."""
        return logging.getLevelName(self.level)


@dataclass(frozen=True)
class FlowView:
    """A flow: its name, tags and labels."""

    flow_id: str
    name: str
    project_name: str
    storage_type: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    created: pendulum.DateTime
    updated: pendulum.DateTime
    raw: flow_pb2.Flow = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: flow_pb2.Flow) -> FlowView:
        """The view of a Flow message."""
        return cls(
            flow_id=message.id,
            name=message.name,
            project_name=message.project_name,
            storage_type=message.storage_type,
            tags=tuple(message.tags),
            labels=dict(message.labels),
            created=moment(message.created.ToDatetime(tzinfo=UTC)),
            updated=moment(message.updated.ToDatetime(tzinfo=UTC)),
            raw=message,
        )


@dataclass(frozen=True)
class Deployment:
    """A flow's deployment: where and how its runs are meant to run."""

    deployment_id: str
    name: str
    flow_id: str
    tags: tuple[str, ...]
    work_pool_name: str
    work_queue_name: str
    concurrency_limit: int | None
    raw: deployment_pb2.Deployment = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: deployment_pb2.Deployment) -> Deployment:
        """The value of a Deployment message."""
        return cls(
            deployment_id=message.id,
            name=message.name,
            flow_id=message.flow_id,
            tags=tuple(message.tags),
            work_pool_name=message.work_pool_name,
            work_queue_name=message.work_queue_name,
            concurrency_limit=message.concurrency_limit
            if message.HasField("concurrency_limit")
            else None,
            raw=message,
        )


@dataclass(frozen=True)
class ConcurrencyLimit:
    """A tag's limit on task runs running at once, and the task runs holding its slots."""

    tag: str
    limit: int
    active_task_run_ids: tuple[str, ...]
    raw: concurrency_limit_pb2.ConcurrencyLimit = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: concurrency_limit_pb2.ConcurrencyLimit) -> ConcurrencyLimit:
        """The value of a ConcurrencyLimit message."""
        return cls(message.tag, message.concurrency_limit, tuple(message.active_slots), message)


@dataclass(frozen=True)
class HistoryInterval:
    """Runs expected to start within one interval, counted by state type and name."""

    start: datetime
    end: datetime
    counts: dict[tuple[StateType, str], int]

    @classmethod
    def from_proto(cls, message: history_pb2.HistoryInterval) -> HistoryInterval:
        """The value of a HistoryInterval message."""
        return cls(
            start=message.interval_start.ToDatetime(tzinfo=UTC),
            end=message.interval_end.ToDatetime(tzinfo=UTC),
            counts={
                (StateType.from_proto(s.state_type), s.state_name): s.count_runs
                for s in message.states
            },
        )


@dataclass(frozen=True)
class GraphNode:
    """One task run in a flow run's dependency graph."""

    task_run_id: str
    name: str
    upstream: tuple[str, ...]
    state: State | None

    @classmethod
    def from_proto(cls, message: graph_pb2.GraphNode) -> GraphNode:
        """The value of a GraphNode message."""
        return cls(
            task_run_id=message.id,
            name=message.name,
            upstream=tuple(message.upstream_dependencies),
            state=State.from_proto(message.state) if message.HasField("state") else None,
        )


@dataclass(frozen=True)
class OrchestrationResult:
    """What the server decided about a proposed state."""

    status: str  # ACCEPT, REJECT, ABORT or WAIT
    state: State | None
    written: bool
    reason: str
    delay: timedelta | None

    @classmethod
    def from_proto(cls, message: orchestration_pb2.OrchestrationResult) -> OrchestrationResult:
        """The value of an OrchestrationResult message."""
        return cls(
            status=orchestration_pb2.SetStateStatus.Name(message.status).removeprefix(
                "SET_STATE_STATUS_"
            ),
            state=State.from_proto(message.state) if message.HasField("state") else None,
            written=message.state_written,
            reason=message.details.reason,
            delay=message.details.delay.ToTimedelta()
            if message.details.HasField("delay")
            else None,
        )


@dataclass(frozen=True)
class Lease:
    """What a heartbeat found: the run's current state, and when its lease now ends (None:
    the run holds none, being neither RUNNING nor CANCELLING). A reporter stops its work when
    the state is CANCELLING, PAUSED or final."""

    state: State | None
    expires: pendulum.DateTime | None
    renewed_task_run_ids: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, message: Any) -> Lease:
        """The value of a HeartbeatFlowRunResponse or HeartbeatTaskRunResponse."""
        expires = None
        if message.HasField("lease_expire_time"):
            expires = moment(message.lease_expire_time.ToDatetime(tzinfo=UTC))
        return cls(
            state=State.from_proto(message.state) if message.HasField("state") else None,
            expires=expires,
            renewed_task_run_ids=tuple(getattr(message, "renewed_task_run_ids", ())),
        )


def duration(value: timedelta | float) -> duration_pb2.Duration:
    """A Duration of a timedelta or of seconds."""
    out = duration_pb2.Duration()
    out.FromTimedelta(value if isinstance(value, timedelta) else timedelta(seconds=value))
    return out


_ROLES = {
    server_service_pb2.CALLER_ROLE_READ: "read",
    server_service_pb2.CALLER_ROLE_WRITE: "write",
}


@dataclass(frozen=True)
class ServerInfo:
    """What a server says of itself and of its caller."""

    server_version: str  # the server's runwire-server version
    authentication_required: bool  # whether every call must carry a token
    caller_name: str  # the name of the caller's token; "" on a server without tokens
    role: str  # "read" or "write" (every caller of a server without tokens); "" if unknown
    raw: server_service_pb2.GetServerInfoResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: server_service_pb2.GetServerInfoResponse) -> ServerInfo:
        """The value of a GetServerInfoResponse message."""
        return cls(
            server_version=message.server_version,
            authentication_required=message.authentication_required,
            caller_name=message.caller.name,
            role=_ROLES.get(message.caller.role, ""),
            raw=message,
        )


def proposed_state(
    state_type: StateType | str,
    *,
    name: str = "",
    message: str = "",
    result: Result | None = None,
    **details: Any,
) -> state_pb2.State:
    """A state to propose; `details` are StateDetails fields (scheduled_time, cache_key, ...)."""
    proposal = state_pb2.State(type=StateType(state_type).to_proto(), name=name, message=message)
    for key, value in details.items():
        if isinstance(value, datetime):
            getattr(proposal.state_details, key).CopyFrom(timestamp(value))
        else:
            setattr(proposal.state_details, key, value)
    if result is not None:
        proposal.result.serializer = result.serializer
        if result.inline_value is not None:
            proposal.result.inline_value = result.inline_value
        elif result.location_uri is not None:
            proposal.result.location_uri = result.location_uri
    return proposal


__all__ = [
    "ConcurrencyLimit",
    "Deployment",
    "FlowRunLog",
    "FlowView",
    "GraphNode",
    "HistoryInterval",
    "OrchestrationResult",
    "ServerInfo",
    "moment",
    "proposed_state",
    "timestamp",
]
