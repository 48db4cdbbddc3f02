"""Limits on what one request or one client may ask for, with errors that name the limit."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from runwire.v1 import filters_pb2
from runwire_server import auth
from runwire_server.errors import InvalidArgument, ResourceExhausted
from runwire_server.metrics import Metrics

FILTERS_FILE = filters_pb2.DESCRIPTOR.name


def check_filter_lists(request: Message, limit: int) -> None:
    """Refuse any list inside a filter longer than `limit`: a filter with a million ids would
    become a million-parameter query (and SQLite allows 32,766)."""
    for field in _filter_fields(request.DESCRIPTOR):
        if request.HasField(field.name):
            _check(getattr(request, field.name), limit, field.name)


@functools.cache
def _filter_fields(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    """The request's fields that hold a filter, found once per request type."""
    return tuple(
        f
        for f in descriptor.fields
        if f.message_type is not None
        and f.message_type.file.name == FILTERS_FILE
        and not f.is_repeated
    )


def _check(value: Message, limit: int, path: str) -> None:
    for child, child_value in value.ListFields():
        child_path = f"{path}.{child.name}"
        if child.is_repeated:
            if len(child_value) > limit:
                raise InvalidArgument(
                    child_path, f"has {len(child_value)} entries; at most {limit} are allowed"
                )
        elif child.message_type is not None:
            _check(child_value, limit, child_path)


def client_key(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """Whom a per-client quota counts against: the token's name, or else the peer's address
    without its port (one host's many connections are one client)."""
    identity = auth.caller.get()
    if identity is not None:
        return f"token {identity.name!r}"
    return f"peer {context.peer().rsplit(':', 1)[0]}"


class StreamQuota:
    """Counts each client's open watch streams and refuses one past the limit."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self._limit = limit
        self._open: Counter[str] = Counter()
        self._gauge = metrics.watch_streams

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        if self._open[client] >= self._limit:
            raise ResourceExhausted(
                "WATCH_STREAMS_EXHAUSTED",
                f"{client} already has {self._limit} open watch streams; close one first "
                "(the server's limit is RUNWIRE_MAX_WATCH_STREAMS_PER_CLIENT)",
                metadata={"limit": str(self._limit), "client": client},
            )
        self._open[client] += 1
        self._gauge.inc()
        try:
            yield
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]
            self._gauge.dec()
