"""Keyset paging with opaque, signed page tokens.

A page token records where the last page ended (the sort value and id of its last row) and a
fingerprint of the request, so the next page continues exactly after that row however many rows
are inserted meanwhile, and a token cannot be replayed against a different query.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from google.protobuf.message import Message
from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import Session

from runwire_server.errors import InvalidArgument

RowT = TypeVar("RowT")

_MAC_BYTES = 16
# The tokens this server makes are a few hundred characters: a longer one is refused unread.
MAX_TOKEN_LENGTH = 2048


@dataclass(frozen=True)
class SortKey:
    """An ORDER BY: an optional primary expression, then the id in the same direction.

    `value_of` reads the primary value from a loaded row to write the next token. Missing
    primary values sort last in both directions.
    """

    id_column: Any
    descending: bool
    expression: Any = None
    value_of: Callable[[Any], Any] | None = None

    def order_by(self) -> list[Any]:
        columns: list[Any] = []
        if self.expression is not None:
            columns.append(
                (self.expression.desc() if self.descending else self.expression.asc()).nulls_last()
            )
        columns.append(self.id_column.desc() if self.descending else self.id_column.asc())
        return columns

    def after(self, value: Any, last_id: uuid.UUID) -> ColumnElement[bool]:
        """Rows that come after the row (value, last_id) in this order."""
        beyond_id = self.id_column < last_id if self.descending else self.id_column > last_id
        if self.expression is None:
            return cast(ColumnElement[bool], beyond_id)
        expr = self.expression
        if value is None:
            return and_(expr.is_(None), beyond_id)
        beyond_value = expr < value if self.descending else expr > value
        return or_(beyond_value, and_(expr == value, beyond_id), expr.is_(None))


@dataclass(frozen=True)
class Page(Generic[RowT]):
    """One page of rows and the token that continues after it ("" at the end). A caller that
    can send only the first rows (a response has a size limit) continues after those with
    `token_after`."""

    rows: Sequence[RowT]
    next_token: str
    token_at: Callable[[int], str]  # the token that continues after the first n rows

    def token_after(self, count: int) -> str:
        return self.next_token if count >= len(self.rows) else self.token_at(count)


@dataclass(frozen=True)
class PageRequest:
    size: int
    offset: int
    token: str
    request: Message  # what the fingerprint is taken of, only when a token is read or made

    @functools.cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.request)


class PageTokens:
    """Signs and checks page tokens with a server secret shared by all replicas."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, fingerprint: str, value: Any, last_id: uuid.UUID) -> str:
        payload = json.dumps(
            {"f": fingerprint, "v": _encode_value(value), "i": last_id.hex}, separators=(",", ":")
        ).encode()
        body = zlib.compress(payload)
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()

    def decode(self, token: str, fingerprint: str) -> tuple[Any, uuid.UUID]:
        invalid = InvalidArgument("page_token", "is not a token this server issued for this query")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise invalid from None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
            raise invalid
        data = json.loads(zlib.decompress(body))
        if data["f"] != fingerprint:
            raise InvalidArgument(
                "page_token", "belongs to a request with different filters or sort"
            )
        return _decode_value(data["v"]), uuid.UUID(hex=data["i"])


def fingerprint(request: Message) -> str:
    """A digest of every request field that must stay the same from page to page."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ("page_token", "page_size"):
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:32]


def page_request(
    request: Message, *, page_size: int, offset: int, default_size: int, max_size: int
) -> PageRequest:
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if page_size > max_size:
        raise InvalidArgument("page_size", f"must be at most {max_size}")
    if offset < 0:
        raise InvalidArgument("offset", "must not be negative")
    token = getattr(request, "page_token", "")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidArgument("page_token", "is not a token this server issued for this query")
    return PageRequest(size=page_size or default_size, offset=offset, token=token, request=request)


def fetch_page(
    session: Session,
    statement: Select[Any],
    sort: SortKey,
    page: PageRequest,
    tokens: PageTokens,
    load: Callable[[Session, Select[Any]], Sequence[Any]] | None = None,
) -> Page[Any]:
    """Run `statement` for one page. The statement selects one ORM entity, or anything `load`
    turns into objects with the sort's attributes and `id`."""
    if page.token:
        value, last_id = tokens.decode(page.token, page.fingerprint)
        statement = statement.where(sort.after(value, last_id))
    elif page.offset:
        statement = statement.offset(page.offset)
    statement = statement.order_by(*sort.order_by()).limit(page.size + 1)
    rows = load(session, statement) if load else session.scalars(statement).unique().all()
    more = len(rows) > page.size
    rows = rows[: page.size]

    def token_at(count: int) -> str:
        last = rows[count - 1]
        value = sort.value_of(last) if sort.value_of is not None else None
        return tokens.encode(page.fingerprint, value, last.id)

    return Page(rows, token_at(len(rows)) if more else "", token_at)


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "t" in value:
        return datetime.fromisoformat(value["t"])
    return value


def choose_sort(sorts: Mapping[Any, SortKey], value: int, field: str = "sort") -> SortKey:
    try:
        return sorts[value]
    except KeyError:
        raise InvalidArgument(field, f"{value} is not a known sort order") from None
