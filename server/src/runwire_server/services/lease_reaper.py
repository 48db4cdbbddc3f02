"""The lease reaper: every `lease_check_seconds`, each run whose lease has ended is proposed
CRASHED (CANCELLED when it was CANCELLING) through the orchestration rules, as any other state
change is, so watchers see it and its slots are released.

The reaper starts one default lease length after the server does: a server that was down kept
every reporter from renewing, and they get that long to reach it again. On PostgreSQL each batch
first takes an advisory lock without waiting, so one replica reaps at a time; each run is checked
again under its row lock, so a heartbeat that renews a lease in the meantime wins.
"""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from runwire_server.clock import now
from runwire_server.errors import NotFound
from runwire_server.metrics import Metrics
from runwire_server.orchestration.context import Settings as OrchestrationSettings
from runwire_server.orchestration.engine import Policy
from runwire_server.orchestration.flow_rules import CORE_FLOW_POLICY
from runwire_server.orchestration.states import State, StateType
from runwire_server.orchestration.task_rules import CORE_TASK_POLICY
from runwire_server.services.states import lock_run, orchestrate_run
from runwire_server.settings import Settings
from runwire_server.storage.database import Database
from runwire_server.storage.run_rows import FLOW, TASK, RunTables, update_run

log = structlog.get_logger("runwire.leases")

RUNS_PER_BATCH = 50
_REAP_LOCK = 0x5255_4E4C  # "RUNL"
GONE = "The process reporting this run stopped heartbeating: its lease ended at {expires}."


class LeaseReaper:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        orchestration: OrchestrationSettings,
        metrics: Metrics,
    ) -> None:
        self._db = db
        self._settings = settings
        self._orchestration = orchestration
        self._metrics = metrics

    async def run(self) -> None:
        """Reap every interval until cancelled; a failed pass is logged and tried again."""
        await asyncio.sleep(max(self._settings.lease_seconds, self._settings.lease_check_seconds))
        while True:
            try:
                await self.reap()
            except Exception as exc:  # the database may be away for a while
                log.warning("leases.reap_failed", error=str(exc))
            await asyncio.sleep(self._settings.lease_check_seconds)

    async def reap(self) -> int:
        """One pass over every ended lease, flow runs first; returns the runs ended."""
        total = 0
        kinds: tuple[tuple[RunTables[Any], Policy], ...] = (
            (FLOW, CORE_FLOW_POLICY),
            (TASK, CORE_TASK_POLICY),
        )
        for tables, policy in kinds:
            while True:
                ended, more = await self._db.write(
                    partial(self._batch, tables=tables, policy=policy)
                )
                total += ended
                if not more:
                    break
        return total

    def _batch(self, session: Session, tables: RunTables[Any], policy: Policy) -> tuple[int, bool]:
        if self._db.is_postgresql:
            held = session.scalar(select(func.pg_try_advisory_xact_lock(_REAP_LOCK)))
            if not held:
                return 0, False  # another replica is reaping
        runs = tables.runs
        at = now()
        ids = session.scalars(
            select(runs.c.id)
            .where(runs.c.lease_expires <= at)
            .order_by(runs.c.lease_expires)
            .limit(RUNS_PER_BATCH + 1)
        ).all()
        ended = sum(self._end(session, tables, policy, run_id) for run_id in ids[:RUNS_PER_BATCH])
        return ended, len(ids) > RUNS_PER_BATCH

    def _end(
        self, session: Session, tables: RunTables[Any], policy: Policy, run_id: uuid.UUID
    ) -> bool:
        try:
            run = lock_run(session, tables, run_id)
        except NotFound:
            return False  # deleted since
        expires = run.lease_expires
        if expires is None or expires > now():
            return False  # renewed, or ended by its reporter, since
        cancelling = run.state_type == StateType.CANCELLING.value
        kind = StateType.CANCELLED if cancelling else StateType.CRASHED
        message = GONE.format(expires=expires.isoformat(timespec="seconds"))

        def proposal(at: Any) -> State:
            return State(type=kind, name=kind.default_name, timestamp=at, message=message)

        transition = orchestrate_run(session, tables, run, proposal, policy, self._orchestration)
        run_kind = "flow_run" if tables.is_flow else "task_run"
        if not transition.written:
            # The rules kept the run where it is: its lease is given up, not proposed again.
            update_run(
                session.connection(), tables, run_id, {"lease_expires": None, "lease_seconds": None}
            )
            log.warning(
                "leases.end_refused",
                run_kind=run_kind,
                run_id=str(run_id),
                reason=transition.reason,
            )
            return False
        self._metrics.leases_ended.labels(run_kind, kind.value).inc()
        log.info("leases.ended", run_kind=run_kind, run_id=str(run_id), state=kind.value)
        return True
