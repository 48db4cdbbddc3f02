"""What one HTTP connection may hold of the server: uvicorn's HTTP/1.1 protocol (httptools),
with the limits it lacks. Without them a client could send headers without end (the server
kept them all in memory), or open connections that never send a request until the process ran
out of file descriptors, and then gRPC and the database could not open theirs either."""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A request's line and headers together; a browser's are a few KiB (nginx refuses past 32 KiB,
# Node past 16 KiB).
MAX_HEAD_BYTES = 64 * 1024
# How long a connection may take to send a request's line and headers, from when it opens or
# its last response ended to when its headers are complete (Go servers commonly take 10 s).
HEAD_SECONDS = 10.0
# How long a request's body may take to arrive once its headers have (a request is at most
# RUNWIRE_MAX_MESSAGE_BYTES; a client that trickles one holds its connection no longer).
BODY_SECONDS = 60.0
# Requests a client may send ahead on one connection before the answers to the first ones:
# each waiting request is held in memory.
MAX_PIPELINED = 16
# File descriptors kept for what is not an HTTP connection: gRPC's, the database's, logs.
RESERVED_DESCRIPTORS = 1024


class HeadTooLarge(Exception):
    """The parser stops, and uvicorn answers 400 and closes the connection."""


def connection_limit(wanted: int) -> int:
    """At most `wanted` connections, and never more than the process can open beside its
    other files. The soft limit on open files is raised to the hard one first, as Go's runtime
    does: the soft default (often 1,024) is a relic that only caps busy servers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_DESCRIPTORS, soft // 2))


def guarded_protocol(max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, limited: the connections open at once, and from one host
    (half of them: one client cannot shut the others out), the size of a request's head, the
    time to send it and its body, and the requests sent ahead on one connection."""
    per_host = max(1, max_connections // 2)
    by_host: Counter[str] = Counter()

    class GuardedHttp(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._head_timer: asyncio.TimerHandle | None = None
            self._host = ""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else ""
            if len(self.connections) > max_connections or by_host[host] >= per_host:
                transport.abort()  # its file descriptor is freed at once
                return
            self._host = host
            by_host[host] += 1
            self._await(HEAD_SECONDS)

        def connection_lost(self, exc: Exception | None) -> None:
            self._done()
            if self._host:
                by_host[self._host] -= 1
                if not by_host[self._host]:
                    del by_host[self._host]
                self._host = ""
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            if len(self.pipeline) >= MAX_PIPELINED:
                raise HeadTooLarge  # uvicorn answers 400 and closes the connection
            super().on_message_begin()
            self._head_bytes = 0
            if self._head_timer is None:
                self._await(HEAD_SECONDS)

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            queued = self.cycle is not None and not self.cycle.response_complete
            if queued:
                # uvicorn queues a request sent ahead of the answer it waits behind, and
                # reads no more meanwhile: its body cannot come, so nothing is timed.
                self._done()
            else:
                self._await(BODY_SECONDS)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._done()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # The next request's head, once nothing runs or waits (as uvicorn's keep-alive):
            # a queued request uvicorn has just started may be a watch that lasts for hours.
            idle = not self.pipeline and (self.cycle is None or self.cycle.response_complete)
            if idle and not self.transport.is_closing() and self._head_timer is None:
                self._await(HEAD_SECONDS)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:
                raise HeadTooLarge

        def _await(self, seconds: float) -> None:
            """Close the connection unless what it is sending (a head, a body) has come
            within `seconds`."""
            self._done()
            self._head_timer = self.loop.call_later(seconds, self._late)

        def _done(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _late(self) -> None:
            self._head_timer = None
            self.transport.close()

    return GuardedHttp
