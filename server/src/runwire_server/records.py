"""What services return: immutable domain values of the resources, read within the unit of
work that found them, free of the database and of the wire. (Runs and their states are read on
the fast statement path as storage.run_rows records.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Flow:
    id: uuid.UUID
    name: str
    project_name: str | None
    storage_type: str | None
    tags: list[str]
    labels: dict[str, str]
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class Deployment:
    id: uuid.UUID
    name: str
    flow_id: uuid.UUID
    tags: list[str]
    work_pool_name: str | None
    work_queue_name: str | None
    paused: bool
    concurrency_limit: int | None
    collision_strategy: str  # an orchestration.context.CollisionStrategy value
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    id: uuid.UUID
    tag: str
    concurrency_limit: int
    active_slots: list[str]  # ids of the task runs holding a slot, sorted
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class Log:
    id: uuid.UUID
    flow_run_id: uuid.UUID
    task_run_id: uuid.UUID | None
    name: str
    level: int
    message: str
    timestamp: datetime
