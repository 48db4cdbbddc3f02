"""Keyset paging: one page of a statement's rows in a sort order, continuing after the row a
page token names (runwire_server.pages signs and checks the tokens)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Select, and_, or_
from sqlalchemy.orm import Session

from runwire_server.errors import InvalidArgument
from runwire_server.pages import Page, PageRequest, PageTokens


@dataclass(frozen=True)
class SortKey:
    """An ORDER BY: an optional primary expression, then the id in the same direction.

    `value_of` reads the primary value from a loaded row to write the next token. Missing
    primary values sort last in both directions. A NULLS clause is left out where the
    expression cannot be NULL (a NOT NULL column, or one marked `never_null`): an index walks
    in either direction only without one on PostgreSQL (NULLS LAST is its ascending order) and
    on SQLite (NULLS FIRST is).
    """

    id_column: Any
    descending: bool
    expression: Any = None
    value_of: Callable[[Any], Any] | None = None
    never_null: bool = False

    def order_by(self) -> list[Any]:
        columns: list[Any] = []
        if self.expression is not None:
            order = self.expression.desc() if self.descending else self.expression.asc()
            nullable = not self.never_null and getattr(self.expression, "nullable", True)
            columns.append(order.nulls_last() if nullable else order)
        columns.append(self.id_column.desc() if self.descending else self.id_column.asc())
        return columns

    def after(self, value: Any, last_id: uuid.UUID) -> ColumnElement[bool]:
        """Rows that come after the row (value, last_id) in this order."""
        beyond_id = self.id_column < last_id if self.descending else self.id_column > last_id
        if self.expression is None:
            return cast(ColumnElement[bool], beyond_id)
        expr = self.expression
        if self.never_null or not getattr(expr, "nullable", True):
            # A range on the sort value first: both databases start the index walk at the
            # row, where the OR alone below has them walk every row before it and drop them.
            if self.descending:
                return and_(expr <= value, or_(expr < value, beyond_id))
            return and_(expr >= value, or_(expr > value, beyond_id))
        if value is None:
            return and_(expr.is_(None), beyond_id)
        beyond_value = expr < value if self.descending else expr > value
        return or_(beyond_value, and_(expr == value, beyond_id), expr.is_(None))


def fetch_page(
    session: Session,
    statement: Select[Any],
    sort: SortKey,
    page: PageRequest,
    tokens: PageTokens,
) -> Page[Any]:
    """Run `statement`, which selects one ORM entity, for one page."""
    return _page(statement, sort, page, tokens, lambda s: session.scalars(s).unique().all())


def fetch_rows(
    conn: Connection,
    statement: Select[Any],
    sort: SortKey,
    page: PageRequest,
    tokens: PageTokens,
    load: Callable[[Connection, Select[Any]], Sequence[Any]],
) -> Page[Any]:
    """Run `statement` for one page on `conn`; `load` runs it and turns its rows into objects
    with the sort's attributes and `id`."""
    return _page(statement, sort, page, tokens, lambda s: load(conn, s))


def _page(
    statement: Select[Any],
    sort: SortKey,
    page: PageRequest,
    tokens: PageTokens,
    run: Callable[[Select[Any]], Sequence[Any]],
) -> Page[Any]:
    if page.token:
        value, last_id = tokens.decode(page.token, page.fingerprint)
        statement = statement.where(sort.after(value, last_id))
    elif page.offset:
        statement = statement.offset(page.offset)
    rows = run(statement.order_by(*sort.order_by()).limit(page.size + 1))
    more = len(rows) > page.size
    rows = rows[: page.size]

    def token_at(count: int) -> str:
        last = rows[count - 1]
        value = sort.value_of(last) if sort.value_of is not None else None
        return tokens.encode(page.fingerprint, value, last.id)

    return Page(rows, token_at(len(rows)) if more else "", token_at)


def choose_sort(sorts: Mapping[Any, SortKey], value: int, field: str = "sort") -> SortKey:
    try:
        return sorts[value]
    except KeyError:
        raise InvalidArgument(field, f"{value} is not a known sort order") from None
