"""Logs: batched writes and ordered, paged reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as f
from runwire_server import records
from runwire_server.errors import InvalidArgument, NotFound
from runwire_server.events import outbox
from runwire_server.events.values import LogWritten
from runwire_server.ids import new_id
from runwire_server.pages import Page, PageRequest, PageTokens
from runwire_server.storage import filters
from runwire_server.storage import models as m
from runwire_server.storage.database import Database
from runwire_server.storage.paging import SortKey, choose_sort, fetch_page

L = m.Log


@dataclass(frozen=True)
class NewLog:
    flow_run_id: uuid.UUID
    task_run_id: uuid.UUID | None
    name: str
    level: int
    message: str
    timestamp: datetime


def create_logs(session: Session, logs: Sequence[NewLog]) -> int:
    """Store a batch: all of it, or (when a run it names does not exist) none of it."""
    flow_run_ids = {log.flow_run_id for log in logs}
    found = set(session.scalars(select(m.FlowRun.id).where(m.FlowRun.id.in_(flow_run_ids))))
    for index, log in enumerate(logs):
        if log.flow_run_id not in found:
            raise NotFound("flow run", f"{log.flow_run_id} (logs[{index}].flow_run_id)")
    task_run_ids = {log.task_run_id for log in logs if log.task_run_id is not None}
    owners = dict(
        session.execute(
            select(m.TaskRun.id, m.TaskRun.flow_run_id).where(m.TaskRun.id.in_(task_run_ids))
        ).all()
    )
    for index, log in enumerate(logs):
        if log.task_run_id is None:
            continue
        if log.task_run_id not in owners:
            raise NotFound("task run", f"{log.task_run_id} (logs[{index}].task_run_id)")
        if owners[log.task_run_id] != log.flow_run_id:
            raise InvalidArgument(
                f"logs[{index}].task_run_id", "belongs to a different flow run than flow_run_id"
            )
    ids = [new_id() for _ in logs]
    if logs:
        session.connection().execute(  # Core: the ORM's bulk insert costs more than the SQL
            insert(m.table_of(L)),
            [
                {
                    "id": log_id,
                    "flow_run_id": log.flow_run_id,
                    "task_run_id": log.task_run_id,
                    "name": log.name,
                    "level": log.level,
                    "message": log.message,
                    "timestamp": log.timestamp,
                }
                for log_id, log in zip(ids, logs, strict=True)
            ],
        )
    for log_id, log in zip(ids, logs, strict=True):
        written = records.Log(
            log_id,
            log.flow_run_id,
            log.task_run_id,
            log.name,
            log.level,
            log.message,
            log.timestamp,
        )
        outbox.record(session, LogWritten(written))
    return len(logs)


_SORTS = {
    f.LOG_SORT_UNSPECIFIED: SortKey(L.id, False, L.timestamp, lambda r: r.timestamp),
    f.LOG_SORT_TIMESTAMP_ASC: SortKey(L.id, False, L.timestamp, lambda r: r.timestamp),
    f.LOG_SORT_TIMESTAMP_DESC: SortKey(L.id, True, L.timestamp, lambda r: r.timestamp),
    f.LOG_SORT_LEVEL_ASC: SortKey(L.id, False, L.level, lambda r: r.level),
    f.LOG_SORT_LEVEL_DESC: SortKey(L.id, True, L.level, lambda r: r.level),
}


def list_logs(
    session: Session, flt: f.LogFilter, sort: int, page: PageRequest, tokens: PageTokens
) -> Page[m.Log]:
    clause = filters.log_clause(flt, "filter")
    statement = select(L) if clause is None else select(L).where(clause)
    return fetch_page(session, statement, choose_sort(_SORTS, sort), page, tokens)


def record(row: m.Log) -> records.Log:
    return records.Log(
        id=row.id,
        flow_run_id=row.flow_run_id,
        task_run_id=row.task_run_id,
        name=row.name,
        level=row.level,
        message=row.message,
        timestamp=row.timestamp,
    )


class LogService:
    """Logs, each call in a transaction of its own."""

    def __init__(self, db: Database, tokens: PageTokens) -> None:
        self._db = db
        self._tokens = tokens

    async def create(self, logs: Sequence[NewLog]) -> int:
        """Store the batch whole (or nothing of it); the number stored."""
        return await self._db.write(lambda s: create_logs(s, logs))

    async def list_page(self, flt: f.LogFilter, sort: int, page: PageRequest) -> Page[records.Log]:
        return await self._db.read(
            lambda s: list_logs(s, flt, sort, page, self._tokens).map(record)
        )
