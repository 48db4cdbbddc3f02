"""Pages of a list and their opaque, signed tokens: what a service returns for one page, and
what a caller asks for.

A page token records where the last page ended (the sort value and id of its last row) and a
fingerprint of the request, so the next page continues exactly after that row however many rows
are inserted meanwhile, and a token cannot be replayed against a different query. The edge
takes the fingerprint of its request (it knows which fields stay the same from page to page);
storage reads and writes the position (storage.paging).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from runwire_server.errors import InvalidArgument

RowT = TypeVar("RowT")
ItemT = TypeVar("ItemT")

_MAC_BYTES = 16
# The tokens this server makes are a few hundred characters: a longer one is refused unread.
MAX_TOKEN_LENGTH = 2048


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

    def map(self, convert: Callable[[RowT], ItemT]) -> Page[ItemT]:
        """The same page of converted rows (for a service that returns domain values)."""
        return Page([convert(row) for row in self.rows], self.next_token, self.token_at)


@dataclass(frozen=True)
class PageRequest:
    """Which page: its size, an offset (first pages only) or a token, and how to take the
    fingerprint of the request, only when a token is read or made."""

    size: int
    offset: int
    token: str
    take_fingerprint: Callable[[], str] = field(compare=False)

    @functools.cached_property
    def fingerprint(self) -> str:
        return self.take_fingerprint()


def page_request(
    *,
    page_size: int,
    offset: int,
    token: str,
    fingerprint: Callable[[], str],
    default_size: int,
    max_size: int,
) -> PageRequest:
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if page_size > max_size:
        raise InvalidArgument("page_size", f"must be at most {max_size}")
    if offset < 0:
        raise InvalidArgument("offset", "must not be negative")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidArgument("page_token", "is not a token this server issued for this query")
    return PageRequest(page_size or default_size, offset, token, fingerprint)


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


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "t" in value:
        return datetime.fromisoformat(value["t"])
    return value
