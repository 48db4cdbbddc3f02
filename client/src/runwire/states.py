"""Run states as Python values."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import pendulum
from google.protobuf import json_format

from runwire.v1 import state_pb2


class StateType(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"

    def to_proto(self) -> state_pb2.StateType.ValueType:
        """The contract's enum value."""
        return state_pb2.StateType.Value(f"STATE_TYPE_{self.value}")

    @classmethod
    def from_proto(cls, value: int) -> StateType:
        """The state type of the contract's enum value."""
        return cls(state_pb2.StateType.Name(value).removeprefix("STATE_TYPE_"))  # type: ignore[arg-type]


FINISHED = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)


@dataclass(frozen=True)
class Result:
    """Where a run's result lives: bytes kept by the server, or a URI to open."""

    serializer: str
    inline_value: bytes | None = None
    location_uri: str | None = None

    @classmethod
    def from_proto(cls, message: state_pb2.ResultReference) -> Result:
        """The value of a ResultReference message."""
        which = message.WhichOneof("storage")
        return cls(
            serializer=message.serializer,
            inline_value=message.inline_value if which == "inline_value" else None,
            location_uri=message.location_uri if which == "location_uri" else None,
        )

    def read_bytes(self) -> bytes:
        """The serialized value, read from the server's copy or from its location (fsspec)."""
        if self.inline_value is not None:
            return self.inline_value
        import fsspec

        with fsspec.open(self.location_uri, "rb") as handle:
            return handle.read()  # type: ignore[no-any-return]

    def load(self) -> Any:
        """The value itself, for the serializers the client knows (json, pickle)."""
        data = self.read_bytes()
        if self.serializer in ("", "json"):
            import json

            return json.loads(data)
        if self.serializer == "pickle":
            import pickle

            return pickle.loads(data)
        raise ValueError(f"no loader for serializer {self.serializer!r}; use read_bytes()")


@dataclass(frozen=True)
class State:
    """One state of a run: its type, name, time (pendulum's, in UTC), message and details."""

    type: StateType
    name: str
    timestamp: pendulum.DateTime
    message: str = ""
    id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    result: Result | None = None

    @classmethod
    def from_proto(cls, message: state_pb2.State) -> State:
        """The value of a State message."""
        return cls(
            type=StateType.from_proto(message.type),
            name=message.name,
            timestamp=pendulum.instance(message.timestamp.ToDatetime(tzinfo=UTC)),
            message=message.message,
            id=message.id,
            details=json_format.MessageToDict(
                message.state_details, preserving_proto_field_name=True
            ),
            result=Result.from_proto(message.result) if message.HasField("result") else None,
        )

    def is_finished(self) -> bool:
        """Completed, failed, cancelled or crashed: the run will not change again."""
        return self.type in FINISHED

    def is_scheduled(self) -> bool:
        """Whether the state's type is SCHEDULED."""
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        """Whether the state's type is PENDING."""
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        """Whether the state's type is RUNNING."""
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        """Whether the state's type is COMPLETED."""
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        """Whether the state's type is FAILED."""
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        """Whether the state's type is CRASHED."""
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        """Whether the state's type is CANCELLED."""
        return self.type is StateType.CANCELLED

    def is_paused(self) -> bool:
        """Whether the state's type is PAUSED."""
        return self.type is StateType.PAUSED

    def __repr__(self) -> str:
        return f"<{self.name}: {self.message!r}>" if self.message else f"<{self.name}>"
