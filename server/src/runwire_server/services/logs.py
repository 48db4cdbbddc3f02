"""Logs: batched writes and ordered, paged reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, insert, select
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
from runwire_server.storage.direct import Direct
from runwire_server.storage.paging import SortKey, choose_sort, fetch_rows

L = m.Log
_FIELDS = tuple(records.Log.__dataclass_fields__)  # a log's columns, in the record's order


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
    written = [
        records.Log(new_id(), n.flow_run_id, n.task_run_id, n.name, n.level, n.message, n.timestamp)
        for n in logs
    ]
    if written:
        # One statement on the driver's cursor: the ORM's bulk insert, and SQLAlchemy's own
        # executemany, cost more than the SQL.
        _INSERT.execute_many(session.connection(), [_row(line) for line in written])
    for line in written:
        outbox.record(session, LogWritten(line))
    return len(written)


_INSERT = Direct(insert(m.table_of(L)).values({name: bindparam(name) for name in _FIELDS}))


def _row(log: records.Log) -> dict[str, Any]:
    return {
        "id": log.id,
        "flow_run_id": log.flow_run_id,
        "task_run_id": log.task_run_id,
        "name": log.name,
        "level": log.level,
        "message": log.message,
        "timestamp": log.timestamp,
    }


_SORTS = {
    f.LOG_SORT_UNSPECIFIED: SortKey(L.id, False, L.timestamp, lambda r: r.timestamp),
    f.LOG_SORT_TIMESTAMP_ASC: SortKey(L.id, False, L.timestamp, lambda r: r.timestamp),
    f.LOG_SORT_TIMESTAMP_DESC: SortKey(L.id, True, L.timestamp, lambda r: r.timestamp),
    f.LOG_SORT_LEVEL_ASC: SortKey(L.id, False, L.level, lambda r: r.level),
    f.LOG_SORT_LEVEL_DESC: SortKey(L.id, True, L.level, lambda r: r.level),
}


# The columns of a log in the order of records.Log's fields: rows become records without the
# ORM's identity map and attribute instrumentation, which cost more than the rows themselves.
_COLUMNS = [m.table_of(L).c[name] for name in _FIELDS]


def _load(conn: Connection, statement: Select[Any]) -> list[records.Log]:
    return [records.Log(*row) for row in conn.execute(statement)]


def list_logs(
    conn: Connection, flt: f.LogFilter, sort: int, page: PageRequest, tokens: PageTokens
) -> Page[records.Log]:
    clause = filters.log_clause(flt, "filter")
    statement = select(*_COLUMNS)
    if clause is not None:
        statement = statement.where(clause)
    return fetch_rows(conn, statement, choose_sort(_SORTS, sort), page, tokens, _load)


class LogService:
    """Logs, each call in a transaction of its own."""

    def __init__(self, db: Database, tokens: PageTokens) -> None:
        self._db = db
        self._tokens = tokens

    async def create(self, logs: Sequence[NewLog]) -> int:
        """Store the batch whole (or nothing of it); the number stored."""
        return await self._db.write(lambda s: create_logs(s, logs))

    async def list_page(self, flt: f.LogFilter, sort: int, page: PageRequest) -> Page[records.Log]:
        return await self._db.read_one(lambda conn: list_logs(conn, flt, sort, page, self._tokens))
