"""Limits on what one request or one client may ask for, with errors that name the limit."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from prometheus_client import Gauge

from runwire.v1 import filters_pb2
from runwire_server.errors import InvalidArgument, ResourceExhausted
from runwire_server.metrics import Metrics
from runwire_server.validation import MAX_NAME

FILTERS_FILE = filters_pb2.DESCRIPTOR.name


# All the lists of one request's filters together may hold this many times the per-list limit:
# each entry is a query parameter, and SQLite takes at most 32,766 in one statement.
TOTAL_FILTER_VALUES_FACTOR = 10
# No stored name, tag or key is longer, so a longer filter value could never match; refusing it
# also keeps every pattern far inside what the databases accept (SQLite: 50,000 bytes a LIKE).
MAX_FILTER_TEXT = MAX_NAME


def check_filters(request: Message, limit: int) -> None:
    """Refuse any list inside a filter longer than `limit`, filters whose lists hold more than
    TOTAL_FILTER_VALUES_FACTOR times that in all (a filter with a million ids would become a
    million-parameter query), and text values no stored value could match."""
    total = 0
    for field in _filter_fields(request.DESCRIPTOR):
        if request.HasField(field.name):
            total += _check(getattr(request, field.name), limit, field.name)
    most = limit * TOTAL_FILTER_VALUES_FACTOR
    if total > most:
        raise InvalidArgument(
            "filter", f"its lists hold {total} entries in all; at most {most} are allowed"
        )


@functools.cache
def _filter_fields(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    """The request's fields that hold a filter, found once per request type."""
    return tuple(
        f
        for f in descriptor.fields
        if f.message_type is not None and not f.is_repeated and _holds_filters(f.message_type)
    )


@functools.cache
def _holds_filters(descriptor: Descriptor) -> bool:
    """A filter, or criteria made of filters (a task run's criteria, say)."""
    if descriptor.file.name == FILTERS_FILE:
        return True
    return not descriptor.full_name.startswith("google.") and any(
        f.message_type is not None and f.message_type.file.name == FILTERS_FILE
        for f in descriptor.fields
    )


def _check(value: Message, limit: int, path: str) -> int:
    """The number of list entries under `value`, refusing any one list longer than `limit`
    and any text the filter could not hold."""
    total = 0
    for child, child_value in value.ListFields():
        child_path = f"{path}.{child.name}"
        if child.is_repeated:
            if len(child_value) > limit:
                raise InvalidArgument(
                    child_path, f"has {len(child_value)} entries; at most {limit} are allowed"
                )
            total += len(child_value)
        if child.type == FieldDescriptor.TYPE_STRING:
            # A list's values are named by the list (`tags.any_of`, not `tags.any_of.values`).
            where = path if child.is_repeated else child_path
            for text in child_value if child.is_repeated else [child_value]:
                _check_text(text, where)
        elif child.message_type is not None and not child.is_repeated:
            total += _check(child_value, limit, child_path)
    return total


def _check_text(value: str, path: str) -> None:
    # PostgreSQL refuses NUL in text; refuse it here, on every database.
    if "\x00" in value:
        raise InvalidArgument(path, "must not contain NUL characters")
    if len(value) > MAX_FILTER_TEXT:
        raise InvalidArgument(
            path, f"holds a value of {len(value)} characters; at most {MAX_FILTER_TEXT}"
        )


class StreamQuota:
    """Counts each client's open streams of one kind and refuses one past the limit."""

    def __init__(
        self, limit: int, *, kind: str, reason: str, setting: str, gauge: Gauge | None = None
    ) -> None:
        self._limit = limit
        self._kind = kind
        self._reason = reason
        self._setting = setting
        self._open: Counter[str] = Counter()
        self._gauge = gauge

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        if self._open[client] >= self._limit:
            raise ResourceExhausted(
                self._reason,
                f"{client} already has {self._limit} open {self._kind}; close one first "
                f"(the server's limit is {self._setting})",
                metadata={"limit": str(self._limit), "client": client},
            )
        self._open[client] += 1
        if self._gauge is not None:
            self._gauge.inc()
        try:
            yield
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]
            if self._gauge is not None:
                self._gauge.dec()


def watch_quota(limit: int, metrics: Metrics) -> StreamQuota:
    """Runwire's own streams (watches), per token or per peer address."""
    return StreamQuota(
        limit,
        kind="watch streams",
        reason="WATCH_STREAMS_EXHAUSTED",
        setting="RUNWIRE_MAX_WATCH_STREAMS_PER_CLIENT",
        gauge=metrics.watch_streams,
    )


def open_stream_quota(limit: int) -> StreamQuota:
    """Streams of the services that need no token (health Watch, reflection), per peer."""
    return StreamQuota(
        limit,
        kind="health or reflection streams",
        reason="STREAMS_EXHAUSTED",
        setting="RUNWIRE_MAX_OPEN_STREAMS_PER_PEER",
    )
