"""Row helpers the services share: loading by id, get-or-create under races, tag replacement."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from runwire_server.errors import NotFound
from runwire_server.storage import models as m
from runwire_server.storage import run_rows
from runwire_server.storage.direct import Direct

ModelT = TypeVar("ModelT")


def get_or_404(session: Session, model: type[ModelT], ident: uuid.UUID, kind: str) -> ModelT:
    row = session.get(model, ident)
    if row is None:
        raise NotFound(kind, str(ident))
    return row


def require_exists(session: Session, model: Any, ident: uuid.UUID, kind: str) -> None:
    """NotFound unless the row exists; reads its id only, so no relationships are loaded."""
    if _id_lookup(model).first(session.connection(), {"id": ident}) is None:
        raise NotFound(kind, str(ident))


@functools.cache
def _id_lookup(model: Any) -> Direct:
    table = m.table_of(model)
    return Direct(select(table.c.id).where(table.c.id == bindparam("id")))


def insert_or_get(
    session: Session, make: Callable[[], ModelT], find: Callable[[], ModelT | None]
) -> tuple[ModelT, bool]:
    """Insert a row unless a unique key already holds one; safe when two writers race."""
    existing = find()
    if existing is not None:
        return existing, False
    row = make()
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        existing = find()
        if existing is None:
            raise
        return existing, False
    return row, True


def insert_run_once(
    session: Session,
    tables: run_rows.RunTables[Any],
    row: dict[str, Any],
    tags: list[str],
    find: Callable[[], uuid.UUID | None] | None,
) -> tuple[uuid.UUID, bool]:
    """Insert a run unless its unique key (`find`; None: it has none but its id) already names
    one; return the run's id and whether it is new. Safe when two writers race: SQLite's write
    transaction (BEGIN IMMEDIATE) holds the only write lock from the check to the insert;
    elsewhere a savepoint catches the loser.
    """
    existing = None if find is None else find()
    if existing is not None:
        return existing, False
    if find is None or session.get_bind().dialect.name == "sqlite":
        run_rows.insert_run(session.connection(), tables, row, tags)
        return row["id"], True
    try:
        with session.begin_nested():
            run_rows.insert_run(session.connection(), tables, row, tags)
    except IntegrityError:
        existing = find()
        if existing is None:
            raise
        return existing, False
    return row["id"], True


def set_tags(owner: Any, tag_model: type[Any], tags: list[str]) -> None:
    current = {row.tag: row for row in owner.tag_rows}
    owner.tag_rows = [current.get(tag) or tag_model(tag=tag) for tag in tags]


def ensure_work_queue(session: Session, pool: str | None, queue: str | None) -> None:
    """Record the pool and queue a run or deployment names, so pool and queue filters see them."""
    if pool:
        insert_or_get(
            session,
            lambda: m.WorkPool(name=pool),
            lambda: session.query(m.WorkPool).filter_by(name=pool).one_or_none(),
        )
    if queue:
        insert_or_get(
            session,
            lambda: m.WorkQueue(work_pool_name=pool, name=queue),
            lambda: (
                session.query(m.WorkQueue)
                .filter(
                    m.WorkQueue.name == queue, m.WorkQueue.work_pool_name.is_not_distinct_from(pool)
                )
                .one_or_none()
            ),
        )
