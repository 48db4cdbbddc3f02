"""Retention in the background: every `retention_interval_seconds`, remove what the settings
no longer keep (storage.retention), one small transaction at a time.

Batches go through the same write path as clients' writes and pause between each other, so a
pass never holds the database's write lock for long. On PostgreSQL each batch first takes an
advisory lock without waiting: while one replica prunes, the others skip their turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from runwire_server.clock import now
from runwire_server.metrics import Metrics
from runwire_server.settings import Settings
from runwire_server.storage import retention
from runwire_server.storage.database import Database

log = structlog.get_logger("runwire.retention")

EVENT_RUNS_PER_BATCH = 100  # finished runs whose events one batch looks at
ROWS_PER_BATCH = 2000  # rows of any one table one batch removes, at most
RUNS_PER_BATCH = 20  # runs one batch deletes (their own rows bounded as above)
PAUSE_SECONDS = 0.02  # between batches: other writers go first
# A run is taken once it finished this long before the cutoff (at most an hour; a tenth of the
# window for short ones), so that the lines it logs just after finishing go with the rest.
LATE_SECONDS = 3600
_PRUNE_LOCK = 0x52554E50  # "RUNP"

Step = Callable[[Session], retention.Batch]


class Retention:
    def __init__(self, db: Database, settings: Settings, metrics: Metrics) -> None:
        self._db = db
        self._settings = settings
        self._metrics = metrics

    @property
    def enabled(self) -> bool:
        s = self._settings
        return s.event_retention_seconds > 0 or s.run_retention_seconds > 0

    async def run(self) -> None:
        """Prune every interval until cancelled; a failed pass is logged and tried again."""
        while True:
            await asyncio.sleep(self._settings.retention_interval_seconds)
            try:
                await self.prune()
            except Exception as exc:  # the database may be away for a while
                log.warning("retention.failed", error=str(exc))

    async def prune(self) -> dict[str, int]:
        """One pass: everything due now, batch by batch. Returns the rows removed by kind."""
        s = self._settings
        removed: dict[str, int] = {}
        if s.run_retention_seconds > 0:
            cutoff = now() - timedelta(seconds=s.run_retention_seconds)
            removed["flow_runs"] = await self._drain(
                "flow_runs",
                partial(
                    retention.prune_runs,
                    finished_before=cutoff,
                    runs=RUNS_PER_BATCH,
                    rows=ROWS_PER_BATCH,
                ),
            )
        if s.event_retention_seconds > 0:
            window = s.event_retention_seconds
            cutoff = now() - timedelta(seconds=window)
            late = timedelta(seconds=min(LATE_SECONDS, window / 10))
            removed["events"] = await self._drain(
                "events",
                partial(
                    retention.prune_events,
                    finished_before=cutoff - late,
                    cutoff=cutoff,
                    runs=EVENT_RUNS_PER_BATCH,
                    rows=ROWS_PER_BATCH,
                ),
            )
            removed["run_deletions"] = await self._drain(
                "run_deletions",
                partial(retention.prune_deletions, cutoff=cutoff, rows=ROWS_PER_BATCH),
            )
        if any(removed.values()):
            log.info("retention.pruned", **removed)
        return removed

    async def _drain(self, kind: str, step: Step) -> int:
        total = 0
        while True:
            batch = await self._db.write(lambda session: self._locked(session, step))
            total += batch.rows
            self._metrics.pruned.labels(kind).inc(batch.rows)
            if not batch.more:
                return total
            await asyncio.sleep(PAUSE_SECONDS)

    def _locked(self, session: Session, step: Step) -> retention.Batch:
        if self._db.is_postgresql:
            held = session.scalar(select(func.pg_try_advisory_xact_lock(_PRUNE_LOCK)))
            if not held:
                return retention.Batch(0, False)  # another replica is pruning
        return step(session)
