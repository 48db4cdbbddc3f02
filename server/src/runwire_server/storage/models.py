"""Tables. Tags live in one table per owner so that tag filters use indexes on every database."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from runwire_server.ids import new_id
from runwire_server.storage.types import Id, JsonDocument, UTCDateTime


def table_of(model: type[Base]) -> Table:
    """A model's Table, for Core statements on the hot path (typed: `__table__` is not)."""
    return cast(Table, model.__table__)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JsonDocument,
        uuid.UUID: Id,
    }


class TimestampsMixin:
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    updated: Mapped[datetime] = mapped_column(UTCDateTime)


class TagRow:
    """One tag of one owner; `owner_id` is named after the owner in each table."""

    owner_id: Mapped[uuid.UUID]
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)


class TaggedMixin:
    tag_rows: Any

    @property
    def tags(self) -> list[str]:
        return sorted(row.tag for row in self.tag_rows)


class Meta(Base):
    """Server-wide key/value facts, such as the page-token signing secret."""

    __tablename__ = "runwire_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class FlowTag(TagRow, Base):
    __tablename__ = "flow_tags"
    __table_args__ = (Index("ix_flow_tags_tag", "tag"),)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        "flow_id", ForeignKey("flows.id", ondelete="CASCADE"), primary_key=True
    )


class Flow(TaggedMixin, TimestampsMixin, Base):
    __tablename__ = "flows"
    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    project_name: Mapped[str | None] = mapped_column(String(255))
    storage_type: Mapped[str | None] = mapped_column(String(255))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tag_rows: Mapped[list[FlowTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )
    __table_args__ = (
        Index("ix_flows_created", "created", "id"),
        Index("ix_flows_updated", "updated", "id"),
    )


class WorkPool(Base):
    """A work pool named by a run or deployment; created on first use."""

    __tablename__ = "work_pools"
    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str | None] = mapped_column(String(255))


class WorkQueue(Base):
    """A work queue (within an optional pool) named by a run or deployment; created on first use."""

    __tablename__ = "work_queues"
    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    work_pool_name: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    __table_args__ = (
        UniqueConstraint("work_pool_name", "name"),
        Index("ix_work_queues_name", "name"),
    )


class DeploymentTag(TagRow, Base):
    __tablename__ = "deployment_tags"
    __table_args__ = (Index("ix_deployment_tags_tag", "tag"),)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        "deployment_id", ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )


class Deployment(TaggedMixin, TimestampsMixin, Base):
    __tablename__ = "deployments"
    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    flow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"))
    work_pool_name: Mapped[str | None] = mapped_column(String(255), index=True)
    work_queue_name: Mapped[str | None] = mapped_column(String(255), index=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    collision_strategy: Mapped[str] = mapped_column(String(16), default="ENQUEUE")
    tag_rows: Mapped[list[DeploymentTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )
    __table_args__ = (
        UniqueConstraint("flow_id", "name"),
        Index("ix_deployments_name", "name", "id"),
        Index("ix_deployments_created", "created", "id"),
        Index("ix_deployments_updated", "updated", "id"),
    )


class RunColumnsMixin(TimestampsMixin):
    """Fields that flow runs and task runs share: current state and timing bookkeeping."""

    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    state_id: Mapped[uuid.UUID | None] = mapped_column(Id)
    state_type: Mapped[str | None] = mapped_column(String(16))
    state_name: Mapped[str | None] = mapped_column(String(255))
    state_timestamp: Mapped[datetime | None]
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    expected_start_time: Mapped[datetime | None]
    next_scheduled_start_time: Mapped[datetime | None]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    total_run_time: Mapped[float] = mapped_column(Float, default=0.0)  # seconds
    empirical_policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # While the run is RUNNING or CANCELLING with a lease (services.leases): when the lease
    # ends unless its reporter renews it, and the length each renewal gives by default.
    lease_expires: Mapped[datetime | None]
    lease_seconds: Mapped[float | None] = mapped_column(Float)


class StateColumnsMixin:
    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    timestamp: Mapped[datetime]
    message: Mapped[str | None] = mapped_column(Text)
    state_details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None]


class FlowRunState(StateColumnsMixin, Base):
    __tablename__ = "flow_run_states"
    flow_run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"))
    __table_args__ = (UniqueConstraint("flow_run_id", "timestamp"),)


class FlowRunTag(TagRow, Base):
    __tablename__ = "flow_run_tags"
    __table_args__ = (Index("ix_flow_run_tags_tag", "tag"),)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        "flow_run_id", ForeignKey("flow_runs.id", ondelete="CASCADE"), primary_key=True
    )


class FlowRun(TaggedMixin, RunColumnsMixin, Base):
    __tablename__ = "flow_runs"
    flow_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("flows.id", ondelete="CASCADE"), index=True
    )
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL"), index=True
    )
    work_pool_name: Mapped[str | None] = mapped_column(String(255), index=True)
    work_queue_name: Mapped[str | None] = mapped_column(String(255), index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_config: Mapped[dict[str, Any] | None]
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), index=True)
    # No foreign key: task runs reference flow runs too, and the cycle buys nothing.
    parent_task_run_id: Mapped[uuid.UUID | None] = mapped_column(Id, index=True)
    flow_version: Mapped[str | None] = mapped_column(String(255), index=True)
    created_by_id: Mapped[str | None] = mapped_column(String(255), index=True)
    created_by_type: Mapped[str | None] = mapped_column(String(255), index=True)
    created_by_display_value: Mapped[str | None] = mapped_column(String(255))
    infrastructure_pid: Mapped[str | None] = mapped_column(String(255))
    tag_rows: Mapped[list[FlowRunTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )
    state: Mapped[FlowRunState | None] = relationship(
        primaryjoin="foreign(FlowRun.state_id) == FlowRunState.id", lazy="joined", viewonly=True
    )
    __table_args__ = (
        UniqueConstraint("flow_id", "idempotency_key"),
        Index("ix_flow_runs_state_name", "state_name"),
        Index("ix_flow_runs_name", "name", "id"),
        Index("ix_flow_runs_start_time", "start_time"),
        Index("ix_flow_runs_expected_start_time", "expected_start_time", "id"),
        Index("ix_flow_runs_next_scheduled", "next_scheduled_start_time", "id"),
        Index("ix_flow_runs_end_time", "end_time", "id"),
        Index("ix_flow_runs_lease_expires", "lease_expires"),
    )


# START_TIME sorts and filters compare the start time, or the expected one for runs not started
# (or else the creation time: never NULL, so that sorts walk the indexes both ways, migration
# 0007).
FLOW_RUN_EFFECTIVE_START = func.coalesce(
    FlowRun.start_time, FlowRun.expected_start_time, FlowRun.created
)
Index("ix_flow_runs_effective_start", FLOW_RUN_EFFECTIVE_START, FlowRun.id)
# Runs in a state, in start-time order: the common list, served from the index (migration 0002).
Index(
    "ix_flow_runs_state_type_effective_start",
    FlowRun.state_type,
    FLOW_RUN_EFFECTIVE_START,
    FlowRun.id,
)


class FlowRunHistorySlot(Base):
    """Flow runs counted per ten minutes of expected start, flow and current state, kept by
    database triggers on flow_runs (migration 0003) so that GetFlowRunHistory reads a few
    thousand rows instead of a million. Every column is an integer, so a run that moves out of a
    slot takes away exactly what it brought. The time-dependent figures (run time so far, lateness
    of runs not started) are kept as counts and sums of instants, and finished at query time.
    Sums stay far inside 64 bits: the largest are run times and lateness, which a million runs
    would need to average thousands of years each to overflow."""

    __tablename__ = "flow_run_history_slots"
    # Whole ten-minute slots since 1970 (floor division, so earlier times are negative).
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # No foreign key: deleting a flow deletes its runs, whose triggers update these rows.
    flow_id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True)
    state_type: Mapped[str] = mapped_column(String(16), primary_key=True)  # '' for none
    state_name: Mapped[str] = mapped_column(String(255), primary_key=True)  # '' for none
    count_runs: Mapped[int] = mapped_column(BigInteger)
    # Sum of total_run_time, each run's rounded to whole microseconds.
    run_time_us: Mapped[int] = mapped_column(BigInteger)
    # Sum of how late started runs started (start minus expected start, when positive).
    start_lateness_us: Mapped[int] = mapped_column(BigInteger)
    # Runs neither started nor finished: late by now minus expected start, once that is past.
    # Instants are kept as offsets from the slot's start (a sum of instants since 1970 would
    # overflow 64 bits at about five thousand runs).
    count_waiting: Mapped[int] = mapped_column(BigInteger)
    waiting_offset_us: Mapped[int] = mapped_column(BigInteger)  # sum of expected start - slot
    # RUNNING runs: they add now minus the state's timestamp to their run time.
    count_running: Mapped[int] = mapped_column(BigInteger)
    running_offset_us: Mapped[int] = mapped_column(BigInteger)  # sum of state timestamp - slot


class TaskRunState(StateColumnsMixin, Base):
    __tablename__ = "task_run_states"
    task_run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task_runs.id", ondelete="CASCADE"))
    __table_args__ = (UniqueConstraint("task_run_id", "timestamp"),)


class TaskRunTag(TagRow, Base):
    __tablename__ = "task_run_tags"
    __table_args__ = (Index("ix_task_run_tags_tag", "tag"),)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        "task_run_id", ForeignKey("task_runs.id", ondelete="CASCADE"), primary_key=True
    )


class TaskRun(TaggedMixin, RunColumnsMixin, Base):
    __tablename__ = "task_runs"
    flow_run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"))
    task_key: Mapped[str] = mapped_column(String(255))
    dynamic_key: Mapped[str] = mapped_column(String(255), default="")
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    cache_key: Mapped[str | None] = mapped_column(Text)
    cache_expiration: Mapped[datetime | None]
    task_version: Mapped[str | None] = mapped_column(String(255))
    task_inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flow_run_run_count: Mapped[int] = mapped_column(Integer, default=0)
    tag_rows: Mapped[list[TaskRunTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )
    state: Mapped[TaskRunState | None] = relationship(
        primaryjoin="foreign(TaskRun.state_id) == TaskRunState.id", lazy="joined", viewonly=True
    )
    __table_args__ = (
        UniqueConstraint("flow_run_id", "task_key", "dynamic_key"),
        Index("ix_task_runs_slug", "flow_run_id", "task_key", "map_index"),
        Index("ix_task_runs_state_type", "state_type"),
        Index("ix_task_runs_state_name", "state_name"),
        Index("ix_task_runs_name", "name", "id"),
        Index("ix_task_runs_expected_start_time", "expected_start_time", "id"),
        Index("ix_task_runs_end_time", "end_time", "id"),
        Index("ix_task_runs_lease_expires", "lease_expires"),
    )


# EXPECTED_START_TIME sorts of task runs: the expected start, or else the creation time (never
# NULL, so that sorts walk the index both ways, migration 0007; every run gets an expected start
# with its first state). A run's task runs in that order are a run page's list.
TASK_RUN_EXPECTED_START = func.coalesce(TaskRun.expected_start_time, TaskRun.created)
Index(
    "ix_task_runs_flow_run_expected_start",
    TaskRun.flow_run_id,
    TASK_RUN_EXPECTED_START,
    TaskRun.id,
)


class Log(Base):
    __tablename__ = "logs"
    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    flow_run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"))
    task_run_id: Mapped[uuid.UUID | None] = mapped_column(Id, index=True)
    name: Mapped[str] = mapped_column(String(255))
    level: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime]
    __table_args__ = (Index("ix_logs_flow_run_timestamp", "flow_run_id", "timestamp", "id"),)


class DeploymentSlot(Base):
    """A deployment concurrency slot held by one flow run."""

    __tablename__ = "deployment_slots"
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    flow_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("flow_runs.id", ondelete="CASCADE"), primary_key=True
    )


class ConcurrencyLimit(TimestampsMixin, Base):
    __tablename__ = "concurrency_limits"
    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    tag: Mapped[str] = mapped_column(String(255), unique=True)
    concurrency_limit: Mapped[int] = mapped_column(Integer)


class ConcurrencySlot(Base):
    """A tag concurrency slot held by one task run."""

    __tablename__ = "concurrency_slots"
    tag: Mapped[str] = mapped_column(
        ForeignKey("concurrency_limits.tag", ondelete="CASCADE"), primary_key=True
    )
    task_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("task_runs.id", ondelete="CASCADE"), primary_key=True
    )
    __table_args__ = (Index("ix_concurrency_slots_task_run", "task_run_id"),)


class TaskRunStateCache(Base):
    """A COMPLETED task-run state stored under a cache key."""

    __tablename__ = "task_run_state_cache"
    id: Mapped[uuid.UUID] = mapped_column(Id, primary_key=True, default=new_id)
    cache_key: Mapped[str] = mapped_column(Text)
    cache_expiration: Mapped[datetime | None]
    task_run_state_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("task_run_states.id", ondelete="CASCADE")
    )
    created: Mapped[datetime]
    __table_args__ = (Index("ix_task_run_state_cache_key", "cache_key", "created"),)


class EventSequence(Base):
    """One row: the last event sequence number given out (see events.outbox)."""

    __tablename__ = "event_sequence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class RunEvent(Base):
    """A serialized WatchFlowRunResponse of one flow run, numbered in commit order."""

    __tablename__ = "run_events"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    flow_run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[datetime]
    __table_args__ = (
        Index("ix_run_events_flow_run_seq", "flow_run_id", "seq"),
        Index("ix_run_events_flow_run_kind_seq", "flow_run_id", "kind", "seq"),
    )


class RunDeletion(Base):
    """A flow run deleted, numbered on the event sequence like its events (which the delete
    removed), so that every replica's watchers of the run hear of it from storage."""

    __tablename__ = "run_deletions"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # No foreign key: the run is gone.
    flow_run_id: Mapped[uuid.UUID] = mapped_column(Id)
    created: Mapped[datetime]
    __table_args__ = (Index("ix_run_deletions_created", "created"),)


class PrunedRun(Base):
    """A flow run whose watch events retention pruned, and the newest sequence number pruned:
    a watch of the run from a cursor below it may have missed events."""

    __tablename__ = "pruned_runs"
    flow_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("flow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    through: Mapped[int] = mapped_column(BigInteger)
