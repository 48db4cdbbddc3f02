"""What a rule sees and decides on: the run's facts, the transition, and the outside world.

Rules read and change `RunFacts` (a plain snapshot of the run row that the service writes back)
and ask an `OrchestrationStore` about other objects (deployments, flow runs, caches, limits). The
service layer implements the store with SQL; tests implement it in memory.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from runwire_server.orchestration.states import State, StateType


class Status(enum.StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    ABORT = "ABORT"
    WAIT = "WAIT"


class CollisionStrategy(enum.StrEnum):
    ENQUEUE = "ENQUEUE"
    CANCEL_NEW = "CANCEL_NEW"


@dataclass
class RunFacts:
    """The fields of a flow run or task run that orchestration reads and maintains."""

    id: uuid.UUID
    state_type: str | None = None
    state_name: str | None = None
    state_timestamp: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    total_run_time: float = 0.0
    expected_start_time: datetime | None = None
    next_scheduled_start_time: datetime | None = None
    run_count: int = 0
    empirical_policy: dict[str, Any] = field(default_factory=dict)
    # When the run's lease ends (None: it holds none); read only, the service keeps it.
    lease_expires: datetime | None = None
    # Flow runs
    deployment_id: uuid.UUID | None = None
    parent_task_run_id: uuid.UUID | None = None
    infrastructure_pid: str | None = None
    # Task runs
    flow_run_id: uuid.UUID | None = None
    flow_run_run_count: int = 0
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeploymentFacts:
    id: uuid.UUID
    concurrency_limit: int | None
    collision_strategy: CollisionStrategy = CollisionStrategy.ENQUEUE


@dataclass(frozen=True)
class FlowRunFacts:
    """What a task-run rule needs to know about the task's flow run."""

    id: uuid.UUID
    state: State | None
    run_count: int


class OrchestrationStore(Protocol):
    def deployment(self, deployment_id: uuid.UUID) -> DeploymentFacts | None: ...

    def acquire_deployment_slot(self, deployment: DeploymentFacts, run_id: uuid.UUID) -> bool: ...

    def holds_deployment_slot(self, deployment_id: uuid.UUID, run_id: uuid.UUID) -> bool: ...

    def release_deployment_slot(self, deployment_id: uuid.UUID, run_id: uuid.UUID) -> None: ...

    def flow_run(self, flow_run_id: uuid.UUID) -> FlowRunFacts | None: ...

    def cached_state(self, cache_key: str, now: datetime) -> State | None: ...

    def insert_cache(self, cache_key: str, expiration: datetime | None, state: State) -> None: ...

    def tag_limits(self, tags: list[str]) -> dict[str, int]: ...

    def acquire_tag_slots(self, limits: dict[str, int], run_id: uuid.UUID) -> list[str]:
        """Take a slot on every tag or none; return the tags that are full."""
        ...

    def release_tag_slots(self, run_id: uuid.UUID) -> None: ...

    def mirror_to_parent_task(
        self, task_run_id: uuid.UUID, child_flow_run_id: uuid.UUID, state: State
    ) -> None:
        """Force `state` (a copy) onto the parent task run of a subflow, if it exists."""
        ...


@dataclass(frozen=True)
class Settings:
    deployment_slot_wait_seconds: int = 30
    tag_slot_wait_seconds: int = 30
    max_cache_key_length: int = 2000
    # The lease a run takes on entering RUNNING when its reporter names none; 0: none.
    lease_seconds: float = 0.0


@dataclass
class Transition:
    """One proposed state change while the policy decides on it."""

    run: RunFacts
    initial: State | None
    proposed: State | None
    now: datetime
    store: OrchestrationStore
    settings: Settings = field(default_factory=Settings)
    status: Status = Status.ACCEPT
    reason: str = ""
    delay_seconds: int | None = None
    validated: State | None = None  # the state written, or the current one if none was
    written: bool = False

    @property
    def initial_type(self) -> StateType | None:
        return None if self.initial is None else self.initial.type

    @property
    def proposed_type(self) -> StateType | None:
        return None if self.proposed is None else self.proposed.type

    @property
    def nullified(self) -> bool:
        return self.proposed is None
