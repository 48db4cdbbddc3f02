"""What one HTTP connection may hold of the server: uvicorn's HTTP/1.1 protocol (httptools),
with the limits it lacks. Without them a client could send headers without end (the server
kept them all in memory), or open connections that never send a request until the process ran
out of file descriptors, and then gRPC and the database could not open theirs either."""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A request's line and headers together; a browser's are a few KiB (nginx refuses past 32 KiB,
# Node past 16 KiB).
MAX_HEAD_BYTES = 64 * 1024
# How long a connection may take to send a request's line and headers, from when it opens or
# its last response ended to when its headers are complete (Go servers commonly take 10 s).
HEAD_SECONDS = 10.0
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
    """uvicorn's httptools protocol, limited: the connections open at once, the size of a
    request's head, and the time to send it."""

    class GuardedHttp(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.abort()  # its file descriptor is freed at once
                return
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_done()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            if self._head_timer is None:
                self._await_head()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head_done()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_head()  # the next request's head, within uvicorn's keep-alive

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:
                raise HeadTooLarge

        def _await_head(self) -> None:
            self._head_done()
            self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_late)

        def _head_done(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return GuardedHttp
