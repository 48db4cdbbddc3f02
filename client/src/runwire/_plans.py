"""Calls described once, as plans, for both clients to run.

A plan says which RPC a call makes, with what request, whether it is safe to send again, and
how its answer becomes the caller's value; it does no I/O. `Client` runs plans over gRPC's
blocking channel and `AsyncClient` over `grpc.aio`, so their calls cannot drift apart: each
client method is made from one plan function by `runwire._methods`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeAlias, TypeVar

from google.protobuf.message import Message

from runwire.views import ViewClient

T = TypeVar("T")
R = TypeVar("R")
# The client that views made from an answer fetch more with: the blocking client that made
# them, or None for an AsyncClient's (their views then use the current client, if any).
Owner: TypeAlias = ViewClient | None


@dataclass(frozen=True, slots=True)
class Rpc:
    """One RPC: the client's stub attribute for its service, and the method's name."""

    service: str
    method: str


@dataclass(frozen=True, slots=True)
class Unary(Generic[T]):
    """One unary call and the value its answer gives."""

    rpc: Rpc
    request: Message
    convert: Callable[[Any, Owner], T]
    # Whether sending it twice does no harm, so that UNAVAILABLE may be retried.
    idempotent: bool = True


@dataclass(frozen=True, slots=True)
class Paged(Generic[T]):
    """A paged list (AIP-158): the items of every page, the next fetched only when needed."""

    rpc: Rpc
    request: Message
    items: str  # the response's repeated field
    convert: Callable[[Any, Owner], T]
    limit: int | None = None


Step: TypeAlias = Unary[Any] | Paged[Any]


@dataclass(frozen=True, slots=True)
class Steps(Generic[T]):
    """A call made of several: `steps(owner)` yields `Unary` and `Paged` plans, is sent each
    one's value (a `Paged` one's as a list), and returns the call's value."""

    steps: Callable[[Owner], Generator[Step, Any, T]]


SKIP: Any = object()  # what a stream's `select` returns for a message the caller does not see


@dataclass(frozen=True, slots=True)
class Stream(Generic[T]):
    """A watch stream, opened again after the last cursor seen when it drops.

    `request` builds the request that opens it after a cursor (None: from the start);
    `select` turns a message into the caller's value, or SKIP. `restart`: a cursor the
    server no longer keeps events for starts the watch over from now; otherwise the expiry
    is raised to the caller. Reconnecting gives up after `reconnect_for` without a message.
    """

    rpc: Rpc
    request: Callable[[int | None], Message]
    select: Callable[[Any, Owner], T]
    cursor: int | None
    restart: bool
    reconnect_for: timedelta


@dataclass(frozen=True, slots=True)
class Guarded(Generic[R, T]):
    """A stream that a first call decides on: `then` gives the stream, or the values that
    stand in for it (a run that has already finished, say)."""

    first: Unary[R]
    then: Callable[[R], Stream[T] | Sequence[T]]


# What a method returns one value from, and what it returns an iterator of.
Op: TypeAlias = Unary[T] | Steps[T]
Many: TypeAlias = Paged[T] | Stream[T] | Guarded[Any, T]
