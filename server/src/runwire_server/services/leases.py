"""Leases: a run that enters RUNNING holds one (services.states), its reporter renews it with
heartbeats, and each heartbeat answers with the run's state, so that a reporter learns of a
cancellation or a pause without a watch. The reaper (services.lease_reaper) ends the runs whose
leases ran out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from runwire_server.clock import now
from runwire_server.orchestration.context import Settings
from runwire_server.orchestration.states import State
from runwire_server.services.states import LEASED, current_state, lock_run
from runwire_server.storage.database import Database
from runwire_server.storage.run_rows import FLOW, TASK, RunTables, update_run


@dataclass(frozen=True)
class Lease:
    """What a heartbeat found: the run's state, and when its lease now ends (None: it holds
    none, being neither RUNNING nor CANCELLING or having entered RUNNING without one)."""

    state: State | None
    expires: datetime | None
    renewed_task_runs: tuple[uuid.UUID, ...] = ()


def renew(
    session: Session,
    tables: RunTables[Any],
    run_id: uuid.UUID,
    seconds: float | None,
    settings: Settings,
) -> tuple[Lease, float | None]:
    """Renew the lease of one run for `seconds` (or the length it took, or the default) and
    return it with the length given."""
    run = lock_run(session, tables, run_id)
    state = current_state(run)
    if state is None or state.type not in LEASED:
        return Lease(state, None), None
    length = seconds or run.lease_seconds or settings.lease_seconds or None
    if length is None:
        return Lease(state, None), None
    expires = now() + timedelta(seconds=length)
    update_run(
        session.connection(),
        tables,
        run_id,
        {"lease_expires": expires, "lease_seconds": length},
    )
    return Lease(state, expires), length


def renew_task_runs(
    session: Session,
    flow_run_id: uuid.UUID,
    task_run_ids: Sequence[uuid.UUID],
    expires: datetime,
    length: float,
) -> tuple[uuid.UUID, ...]:
    """Give the flow run's lease to those of `task_run_ids` that are its own and leased."""
    runs = TASK.runs
    statement = (
        update(runs)
        .where(
            runs.c.id.in_(list(task_run_ids)),
            runs.c.flow_run_id == flow_run_id,
            runs.c.state_type.in_([t.value for t in LEASED]),
        )
        .values(lease_expires=expires, lease_seconds=length)
        .returning(runs.c.id)
    )
    return tuple(sorted(session.connection().execute(statement).scalars()))


class LeaseService:
    """Heartbeats, each a small write of its own."""

    def __init__(self, db: Database, orchestration: Settings) -> None:
        self._db = db
        self._orchestration = orchestration

    async def heartbeat_flow_run(
        self,
        flow_run_id: uuid.UUID,
        seconds: float | None,
        task_run_ids: Sequence[uuid.UUID] = (),
    ) -> Lease:
        """Renew a flow run's lease and give the same end to those of its task runs listed."""

        def work(session: Session) -> Lease:
            lease, length = renew(session, FLOW, flow_run_id, seconds, self._orchestration)
            if lease.expires is None or length is None or not task_run_ids:
                return lease
            renewed = renew_task_runs(session, flow_run_id, task_run_ids, lease.expires, length)
            return Lease(lease.state, lease.expires, renewed)

        return await self._db.write(work)

    async def heartbeat_task_run(self, task_run_id: uuid.UUID, seconds: float | None) -> Lease:
        return await self._db.write(
            lambda s: renew(s, TASK, task_run_id, seconds, self._orchestration)[0]
        )
