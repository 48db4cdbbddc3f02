"""A small Connect client over HTTP/1.1 for the benchmarks: raw asyncio connections with
httptools' response parser, one call at a time per connection (keep-alive), so that what the
client spends per call stays small beside what the server does.

Unary calls send `application/proto` or `application/json`; a server stream sends one
enveloped message (`application/connect+proto` or `application/connect+json`) and reads
enveloped messages until the end-of-stream message.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

UNARY_TYPES = {"proto": b"application/proto", "json": b"application/json"}
STREAM_TYPES = {"proto": b"application/connect+proto", "json": b"application/connect+json"}
END_OF_STREAM = 0x02


def address_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def request_head(host: str, path: str, content_type: bytes, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\n".encode()
        + b"content-type: "
        + content_type
        + b"\r\nconnect-protocol-version: 1\r\n"
        + f"content-length: {length}\r\n\r\n".encode()
    )


def envelope(message: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(message)) + message


class CallFailed(Exception):
    pass


QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `call` sends a request and returns (status, body).

    With `quickack`, the connection acknowledges every segment it receives at once (Linux's
    TCP_QUICKACK, which the kernel turns off again by itself, so it is set after each read).
    A server whose sockets wait for the acknowledgment of a response's first segment before
    sending the next (Nagle's algorithm, without TCP_NODELAY) then answers a call on a
    connection that was used before in a round trip, instead of after the client's delayed
    acknowledgment (up to 40 ms on Linux)."""

    def __init__(self, quickack: bool = False) -> None:
        self.quickack = quickack and QUICKACK is not None
        self.sock: socket.socket | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: list[bytes] = []
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sock = transport.get_extra_info("socket")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        if self.quickack and self.sock is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.chunks)
        self.chunks = []
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), body))

    async def call(self, request: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


class ConnectClient:
    """`size` connections to the HTTP edge at `url`; `unary` takes a free one for each call,
    so `size` should be the number of calls in flight at once. A connection the server closed
    (uvicorn closes those idle for 5 s) is opened again."""

    def __init__(self, url: str, codec: str, size: int, quickack: bool = True) -> None:
        self.quickack = quickack
        self.host, self.port = address_of(url)
        self.codec = codec
        self.content_type = UNARY_TYPES[codec]
        self.size = size
        self.free: list[_Connection] = []

    async def open(self) -> ConnectClient:
        for _ in range(self.size):
            self.free.append(await self._connect())
        return self

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(self.quickack), self.host, self.port
        )
        return connection

    def close(self) -> None:
        for connection in self.free:
            if connection.transport is not None:
                connection.transport.close()
        self.free = []

    async def unary(self, path: str, body: bytes) -> bytes:
        """POST one message to `path` (`/runwire.v1.FlowRunService/GetFlowRun`); returns the
        response's body, or raises CallFailed with the error the server sent."""
        connection = self.free.pop()
        if connection.lost is not None:  # the server closes connections idle for a while
            connection = await self._connect()
        try:
            head = request_head(self.host, path, self.content_type, len(body))
            status, answer = await connection.call(head + body)
        finally:
            self.free.append(connection)
        if status != 200:
            raise CallFailed(f"{path}: HTTP {status}: {answer[:300]!r}")
        return answer


class _Stream(asyncio.Protocol):
    """One server stream on its own connection: calls `on_message(bytes)` for each message
    as it arrives, and `done` resolves with the end-of-stream message."""

    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self.on_message = on_message
        self.parser = httptools.HttpResponseParser(self)
        self.buffer = bytearray()
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionResetError("the stream's connection closed"))

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        buffer = self.buffer
        buffer += body
        while len(buffer) >= 5:
            flags, length = struct.unpack_from(">BI", buffer)
            if len(buffer) < 5 + length:
                return
            message = bytes(buffer[5 : 5 + length])
            del buffer[: 5 + length]
            if flags & END_OF_STREAM:
                if not self.done.done():
                    self.done.set_result(message)
            else:
                self.on_message(message)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if not self.done.done():
            self.done.set_exception(CallFailed(f"HTTP {status}: the stream ended unannounced"))

    def cancel(self) -> None:
        if not self.done.done():
            self.done.cancel()
        if self.transport is not None:
            self.transport.close()


async def open_stream(
    url: str, path: str, codec: str, request: bytes, on_message: Callable[[bytes], None]
) -> _Stream:
    """Start a server stream: `request` is the message (unenveloped) in `codec`'s form."""
    host, port = address_of(url)
    loop = asyncio.get_running_loop()
    _, stream = await loop.create_connection(lambda: _Stream(on_message), host, port)
    body = envelope(request)
    assert stream.transport is not None
    stream.transport.write(request_head(host, path, STREAM_TYPES[codec], len(body)) + body)
    return stream
