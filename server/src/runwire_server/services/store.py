"""The orchestration store over SQL: what rules may ask about deployments, flow runs, caches
and concurrency limits, inside the transaction that writes the state."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.orm import Session

from runwire_server.errors import NotFound
from runwire_server.orchestration.context import (
    CollisionStrategy,
    DeploymentFacts,
    FlowRunFacts,
)
from runwire_server.orchestration.states import State
from runwire_server.run_records import state_from_row
from runwire_server.storage import models as m
from runwire_server.storage import run_rows

_SLOTS = m.table_of(m.ConcurrencySlot)
_RELEASE_TAG_SLOTS = delete(_SLOTS).where(_SLOTS.c.task_run_id == bindparam("run_id"))


# Force a copy of a subflow's state onto the task run that stands for it in its parent
# (services.states.mirror_subflow_state).
Mirror = Callable[[Session, uuid.UUID, uuid.UUID, State], None]


class SqlStore:
    def __init__(self, session: Session, mirror: Mirror) -> None:
        self._session = session
        self._mirror = mirror

    def deployment(self, deployment_id: uuid.UUID) -> DeploymentFacts | None:
        # Locked so that two runs of one deployment cannot both take its last slot.
        row = self._session.scalars(
            select(m.Deployment).where(m.Deployment.id == deployment_id).with_for_update()
        ).one_or_none()
        if row is None:
            return None
        strategy = CollisionStrategy(row.collision_strategy)
        return DeploymentFacts(row.id, row.concurrency_limit, strategy)

    def acquire_deployment_slot(self, deployment: DeploymentFacts, run_id: uuid.UUID) -> bool:
        if self.holds_deployment_slot(deployment.id, run_id):
            return True
        taken = self._session.scalar(
            select(func.count()).where(m.DeploymentSlot.deployment_id == deployment.id)
        )
        if (taken or 0) >= (deployment.concurrency_limit or 0):
            return False
        self._session.add(m.DeploymentSlot(deployment_id=deployment.id, flow_run_id=run_id))
        self._session.flush()
        return True

    def holds_deployment_slot(self, deployment_id: uuid.UUID, run_id: uuid.UUID) -> bool:
        return self._session.get(m.DeploymentSlot, (deployment_id, run_id)) is not None

    def release_deployment_slot(self, deployment_id: uuid.UUID, run_id: uuid.UUID) -> None:
        self._session.execute(
            delete(m.DeploymentSlot).where(
                m.DeploymentSlot.deployment_id == deployment_id,
                m.DeploymentSlot.flow_run_id == run_id,
            )
        )

    def flow_run(self, flow_run_id: uuid.UUID) -> FlowRunFacts | None:
        try:
            row = run_rows.read_run(
                self._session.connection(), run_rows.FLOW, flow_run_id, tags=False
            )
        except NotFound:
            return None
        state = None if row.state is None else state_from_row(row.state)
        return FlowRunFacts(row.id, state, row.run_count)

    def cached_state(self, cache_key: str, now: datetime) -> State | None:
        row = self._session.scalars(
            select(m.TaskRunState)
            .join(m.TaskRunStateCache, m.TaskRunStateCache.task_run_state_id == m.TaskRunState.id)
            .where(
                m.TaskRunStateCache.cache_key == cache_key,
                or_(
                    m.TaskRunStateCache.cache_expiration.is_(None),
                    m.TaskRunStateCache.cache_expiration > now,
                ),
            )
            .order_by(m.TaskRunStateCache.created.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else state_from_row(row)

    def insert_cache(self, cache_key: str, expiration: datetime | None, state: State) -> None:
        assert state.id is not None
        self._session.add(
            m.TaskRunStateCache(
                cache_key=cache_key,
                cache_expiration=expiration,
                task_run_state_id=state.id,
                created=state.timestamp,
            )
        )

    def tag_limits(self, tags: list[str]) -> dict[str, int]:
        if not tags:
            return {}
        rows = self._session.scalars(
            select(m.ConcurrencyLimit).where(m.ConcurrencyLimit.tag.in_(tags)).with_for_update()
        )
        return {row.tag: row.concurrency_limit for row in rows}

    def acquire_tag_slots(self, limits: dict[str, int], run_id: uuid.UUID) -> list[str]:
        rows = self._session.execute(
            select(m.ConcurrencySlot.tag, func.count())
            .where(
                m.ConcurrencySlot.tag.in_(list(limits)),
                m.ConcurrencySlot.task_run_id != run_id,
            )
            .group_by(m.ConcurrencySlot.tag)
        ).all()
        counts = {tag: count for tag, count in rows}
        full = [tag for tag, limit in limits.items() if counts.get(tag, 0) >= limit]
        if full:
            return full
        for tag in limits:
            if self._session.get(m.ConcurrencySlot, (tag, run_id)) is None:
                self._session.add(m.ConcurrencySlot(tag=tag, task_run_id=run_id))
        self._session.flush()
        return []

    def release_tag_slots(self, run_id: uuid.UUID) -> None:
        # Every finished task run passes here, most holding no slot: one prebuilt statement.
        self._session.connection().execute(_RELEASE_TAG_SLOTS, {"run_id": run_id})

    def mirror_to_parent_task(
        self, task_run_id: uuid.UUID, child_flow_run_id: uuid.UUID, state: State
    ) -> None:
        self._mirror(self._session, task_run_id, child_flow_run_id, state)
