"""Walking a paged list: the page tokens, and the limit a caller set on the items."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from runwire._plans import Owner, Paged

T = TypeVar("T")


class PageWalk(Generic[T]):
    """Where a walk through a `Paged` plan's pages is; both clients drive it.

    `request()` is the next page's request (None once done), `take(page)` the values of a
    page that arrived. The plan's request is copied, so that running a plan leaves it as it
    was.
    """

    def __init__(self, plan: Paged[T], owner: Owner) -> None:
        self._plan = plan
        self._owner = owner
        self._request = type(plan.request)()
        self._request.CopyFrom(plan.request)
        self._seen = 0
        self._done = plan.limit is not None and plan.limit <= 0

    def request(self) -> Any:
        return None if self._done else self._request

    def take(self, page: Any) -> list[T]:
        items = list(getattr(page, self._plan.items))
        limit = self._plan.limit
        if limit is not None and self._seen + len(items) >= limit:
            items = items[: limit - self._seen]
            self._done = True
        self._seen += len(items)
        token = page.next_page_token
        if not token:
            self._done = True
        else:
            self._request.page_token = token  # type: ignore[attr-defined]
        return [self._plan.convert(item, self._owner) for item in items]
