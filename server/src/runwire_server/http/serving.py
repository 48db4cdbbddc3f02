"""Serving the HTTP edge with uvicorn on the server's own event loop, started and stopped
with the gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator

import uvicorn

from runwire_server.http.connections import connection_limit, guarded_protocol
from runwire_server.http.edge import Asgi
from runwire_server.settings import Settings


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside a server that handles its own signals (SIGTERM drains both edges)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn serving the HTTP edge as a task of the running event loop."""

    def __init__(self, app: Asgi, settings: Settings) -> None:
        self._settings = settings
        tls = settings.tls
        config = uvicorn.Config(
            app,
            lifespan="off",
            http=guarded_protocol(connection_limit(settings.max_http_connections)),
            ws="none",
            log_config=None,
            access_log=False,
            server_header=False,
            limit_concurrency=settings.max_concurrent_calls,
            timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
            ssl_certfile=settings.tls_cert_file if tls else None,
            ssl_keyfile=settings.tls_key_file if tls else None,
            ssl_ca_certs=settings.tls_client_ca_file or None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if settings.mutual_tls else ssl.CERT_NONE,
        )
        self._server = _EmbeddedServer(config)
        self._socket: socket.socket | None = None
        self._loop: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        """Listen on RUNWIRE_HTTP_ADDRESS; returns the port (the one chosen, for port 0)."""
        host, _, port = self._settings.http_address.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, so that asyncio turns Nagle's algorithm off on each connection
        # (it does so only for sockets that say they are TCP): a response's headers and body
        # are two writes, and the second would wait for the client's delayed acknowledgment.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            # SO_REUSEADDR, and never SO_REUSEPORT: two servers must not share a port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
            sock.listen(2048)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._loop = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._loop.done():  # it could not start; its error says why
                failed, self._loop = self._loop, None
                sock.close()
                failed.result()
                raise OSError("the HTTP edge stopped as it started")
            await asyncio.sleep(0.005)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let calls in flight finish within `grace` seconds (by default the
        server's grace period), then cancel those that have not, and close."""
        if self._loop is None:
            if self._socket is not None:
                self._socket.close()
            return
        if grace is not None:
            self._server.config.timeout_graceful_shutdown = max(0, grace)  # type: ignore[assignment]
        self._server.should_exit = True
        loop, self._loop = self._loop, None
        try:
            await loop
        finally:
            if self._socket is not None:
                self._socket.close()
