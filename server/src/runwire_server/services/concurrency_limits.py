"""Tag concurrency limits for task runs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from runwire_server import records
from runwire_server.clock import now
from runwire_server.errors import NotFound
from runwire_server.pages import Page, PageRequest, PageTokens
from runwire_server.storage import models as m
from runwire_server.storage.database import Database
from runwire_server.storage.paging import SortKey, fetch_page
from runwire_server.storage.rows import insert_or_get

L = m.ConcurrencyLimit


def _find(session: Session, tag: str) -> m.ConcurrencyLimit | None:
    return session.scalars(select(L).where(L.tag == tag)).one_or_none()


def upsert_limit(session: Session, tag: str, limit: int) -> tuple[m.ConcurrencyLimit, bool]:
    at = now()
    row, created = insert_or_get(
        session,
        lambda: L(tag=tag, concurrency_limit=limit, created=at, updated=at),
        lambda: _find(session, tag),
    )
    if not created and row.concurrency_limit != limit:
        row.concurrency_limit = limit
        row.updated = at
    return row, created


def get_limit(session: Session, tag: str) -> m.ConcurrencyLimit:
    row = _find(session, tag)
    if row is None:
        raise NotFound("concurrency limit", tag)
    return row


def active_slots(session: Session, tag: str) -> list[str]:
    ids = session.scalars(select(m.ConcurrencySlot.task_run_id).where(m.ConcurrencySlot.tag == tag))
    return sorted(str(i) for i in ids)


_SORT = SortKey(L.id, False, L.tag, lambda r: r.tag)


def list_limits(
    session: Session, page: PageRequest, tokens: PageTokens
) -> Page[m.ConcurrencyLimit]:
    return fetch_page(session, select(L), _SORT, page, tokens)


def delete_limit(session: Session, tag: str) -> None:
    session.delete(get_limit(session, tag))


def record(session: Session, row: m.ConcurrencyLimit) -> records.ConcurrencyLimit:
    return records.ConcurrencyLimit(
        id=row.id,
        tag=row.tag,
        concurrency_limit=row.concurrency_limit,
        active_slots=active_slots(session, row.tag),
        created=row.created,
        updated=row.updated,
    )


class ConcurrencyLimitService:
    """Tag concurrency limits, each call in a transaction of its own."""

    def __init__(self, db: Database, tokens: PageTokens) -> None:
        self._db = db
        self._tokens = tokens

    async def upsert(self, tag: str, limit: int) -> tuple[records.ConcurrencyLimit, bool]:
        """The tag's limit, made or changed to `limit`; and whether it was made."""

        def work(session: Session) -> tuple[records.ConcurrencyLimit, bool]:
            row, created = upsert_limit(session, tag, limit)
            return record(session, row), created

        return await self._db.write(work)

    async def get(self, tag: str) -> records.ConcurrencyLimit:
        return await self._db.read(lambda s: record(s, get_limit(s, tag)))

    async def list_page(self, page: PageRequest) -> Page[records.ConcurrencyLimit]:
        return await self._db.read(
            lambda s: list_limits(s, page, self._tokens).map(lambda row: record(s, row))
        )

    async def delete(self, tag: str) -> None:
        await self._db.write(lambda s: delete_limit(s, tag))
