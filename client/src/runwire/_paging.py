"""Walking a paged list: the page tokens, and the limit a caller set on the items."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from runwire._plans import Owner, Paged

T = TypeVar("T")


class PageWalk(Generic[T]):
    """Where a walk through a paged list is; both clients drive it.

    `request()` is the next page's request (None once done), `take(page)` the values of a
    page that arrived: `convert` of each item of the page's `items` field, `limit` of them
    at most. The request is copied, so that the caller's stays as it was.
    """

    def __init__(
        self,
        request: Message,
        items: str,
        convert: Callable[[Any, Owner], T],
        owner: Owner,
        limit: int | None = None,
    ) -> None:
        self._items = items
        self._convert = convert
        self._owner = owner
        self._limit = limit
        self._request = type(request)()
        self._request.CopyFrom(request)
        self._seen = 0
        self._done = limit is not None and limit <= 0

    @classmethod
    def of(cls, plan: Paged[T], owner: Owner) -> PageWalk[T]:
        """The walk through a `Paged` plan's pages."""
        return cls(plan.request, plan.items, plan.convert, owner, plan.limit)

    def request(self) -> Any:
        return None if self._done else self._request

    def take(self, page: Any) -> list[T]:
        items = list(getattr(page, self._items))
        limit = self._limit
        if limit is not None and self._seen + len(items) >= limit:
            items = items[: limit - self._seen]
            self._done = True
        self._seen += len(items)
        token = page.next_page_token
        if not token:
            self._done = True
        else:
            self._request.page_token = token  # type: ignore[attr-defined]
        return [self._convert(item, self._owner) for item in items]
