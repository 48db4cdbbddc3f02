"""States as plain values: what orchestration reasons about."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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

    @property
    def default_name(self) -> str:
        return self.value.title()


TERMINAL_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)


@dataclass(frozen=True)
class State:
    """One state of a run. `details` holds the StateDetails fields by name; `result` the
    ResultReference as a dict (serializer plus inline_value or location_uri), or None."""

    type: StateType
    name: str
    timestamp: datetime
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    id: uuid.UUID | None = None

    @property
    def is_final(self) -> bool:
        return self.type in TERMINAL_TYPES

    @property
    def scheduled_time(self) -> datetime | None:
        value = self.details.get("scheduled_time")
        return value if isinstance(value, datetime) else None

    def replace(self, **changes: Any) -> State:
        return dataclasses.replace(self, **changes)
