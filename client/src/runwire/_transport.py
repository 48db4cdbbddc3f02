"""The blocking client's transport: its channel, the token, deadlines, retries and errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from runwire import _diagnose, _retry, _tracing
from runwire.connection import ConnectionSettings
from runwire.errors import DeadlineExceeded, RunwireError, Unavailable, from_rpc_error

ResponseT = TypeVar("ResponseT", bound=Message)
KEEPALIVE = (("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 20_000))


class Transport:
    """Sends calls over one gRPC channel, each with a deadline, retried under `_retry`.

    While the server has asked callers to stay away (a RetryInfo on UNAVAILABLE, which a
    server that is shutting down sends), calls wait that long first, within their deadline:
    a server that sees its port go quiet can stop without cutting off calls that reach it at
    the last moment.
    """

    def __init__(self, connection: ConnectionSettings, *, timeout: float, retries: int) -> None:
        self.connection = connection
        self.address = connection.address
        self.timeout = timeout
        self.retries = retries
        self.channel = connection.channel(KEEPALIVE)
        self.metadata = connection.metadata
        # Until the channel has connected once, a failure to connect is diagnosed before a call
        # waits for the connection (see _diagnose); afterwards calls go straight out.
        self._first = _diagnose.FirstConnection(self.channel, connection)
        self._away_until = 0.0  # monotonic time the server asked calls to wait for

    def close(self) -> None:
        self.channel.close()

    def wait_until_ready(self, timeout: float) -> None:
        if self._first.connected:
            try:
                grpc.channel_ready_future(self.channel).result(timeout=timeout)
            except grpc.FutureTimeoutError:
                raise Unavailable(f"no connection to {self.address} within {timeout:g}s") from None
        elif not self._first.wait(time.monotonic() + timeout, until_ready=True):
            raise Unavailable(f"no connection to {self.address} within {timeout:g}s")

    def first_connection(self, deadline: float) -> None:
        """Before the first connection: fail at once if TLS settings keep the client out, where
        a call would wait its whole deadline."""
        if not self._first.connected:
            self._first.wait(deadline, until_ready=False)

    def away(self) -> float:
        """Seconds the server still asks callers to stay away."""
        return max(self._away_until - time.monotonic(), 0.0)

    def error(self, exc: grpc.RpcError) -> RunwireError:
        """The client's error for a failed call; remembers a server's request to stay away."""
        error = from_rpc_error(exc)
        if error.retry_delay:
            self._away_until = time.monotonic() + error.retry_delay
        return error

    def explain(self, error: RunwireError) -> RunwireError:
        """A call that found no connection: the TLS mismatch behind it, if there is one (the
        server may have restarted with other TLS settings)."""
        if isinstance(error, Unavailable | DeadlineExceeded) and not _diagnose.is_connected(
            self.channel
        ):
            mismatch = _diagnose.diagnose(self.connection)
            if mismatch is not None:
                mismatch.__cause__ = error
                return mismatch
        return error

    def call(
        self,
        method: Callable[..., ResponseT],
        request: Message,
        *,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> ResponseT:
        attempt = 0
        while True:
            seconds = timeout or self.timeout
            deadline = time.monotonic() + seconds
            away = self.away()
            refused = _retry.too_long_away(away, seconds, self.address)
            if refused is not None:
                raise refused
            if away > 0:
                time.sleep(away)
            self.first_connection(deadline)
            seconds = max(deadline - time.monotonic(), 0.001)
            try:
                # wait_for_ready: a call made while the channel reconnects waits (within its
                # deadline) instead of failing at once; nothing is sent until it is connected.
                return method(
                    request,
                    timeout=seconds,
                    metadata=_tracing.outgoing(self.metadata),
                    wait_for_ready=True,
                )
            except grpc.RpcError as exc:
                error = self.error(exc)
            if not _retry.may_retry(
                error, idempotent=idempotent, attempt=attempt, retries=self.retries
            ):
                raise self.explain(error)
            time.sleep(_retry.call_backoff(attempt))
            attempt += 1

    def stream(self, method: Callable[..., Any], request: Message) -> Any:
        """Open a server stream (without a deadline: a watch lasts as long as its caller)."""
        self.first_connection(time.monotonic() + self.timeout)
        return method(request, metadata=_tracing.outgoing(self.metadata), wait_for_ready=True)
