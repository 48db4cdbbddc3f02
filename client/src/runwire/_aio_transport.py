"""The asyncio client's transport: a `grpc.aio` channel, with the blocking transport's
deadlines, retries and errors (the policy is `_retry`'s, shared by both)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from runwire import _diagnose, _retry, _tracing
from runwire._transport import KEEPALIVE
from runwire.connection import ConnectionSettings
from runwire.errors import DeadlineExceeded, RunwireError, Unavailable, from_rpc_error

ResponseT = TypeVar("ResponseT", bound=Message)
_READY = grpc.ChannelConnectivity.READY
_FAILED = grpc.ChannelConnectivity.TRANSIENT_FAILURE
_SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN


async def _diagnosis(connection: ConnectionSettings, seconds: float) -> RunwireError | None:
    # The probes are short blocking socket calls (at most `seconds`), made only when
    # connecting has failed: a worker thread keeps them off the event loop.
    return await asyncio.to_thread(_diagnose.diagnose, connection, seconds)


class AioTransport:
    """Sends calls over one `grpc.aio` channel; see `runwire._transport.Transport`."""

    def __init__(self, connection: ConnectionSettings, *, timeout: float, retries: int) -> None:
        self.connection = connection
        self.address = connection.address
        self.timeout = timeout
        self.retries = retries
        self.channel = connection.aio_channel(KEEPALIVE)
        self.metadata = connection.metadata
        self.connected = False
        self._away_until = 0.0

    async def close(self) -> None:
        await self.channel.close()

    async def _wait(self, deadline: float, *, until_ready: bool) -> bool:
        """Until the channel first connects: wait for it, diagnosing one failure to connect
        (TlsMismatch is raised at once when TLS settings are the cause). False when the
        deadline passes, or, unless `until_ready`, when the server is simply down."""
        diagnosed = False
        while not self.connected:
            state = self.channel.get_state(try_to_connect=True)
            if state is _READY:
                self.connected = True
                break
            if state is _SHUTDOWN:
                return False
            if state is _FAILED and not diagnosed:
                diagnosed = True
                left = max(deadline - time.monotonic(), 0.05)
                mismatch = await _diagnosis(self.connection, min(_diagnose.PROBE_SECONDS, left))
                if mismatch is not None:
                    raise mismatch
                if not until_ready:
                    return False
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.channel.wait_for_state_change(state), left)
            except TimeoutError:
                return False
        return True

    # `timeout` as Client's: a gRPC deadline, which asyncio.timeout could not pass on.
    async def wait_until_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        if self.connected:
            try:
                await asyncio.wait_for(self.channel.channel_ready(), timeout)
            except TimeoutError:
                raise Unavailable(f"no connection to {self.address} within {timeout:g}s") from None
        elif not await self._wait(deadline, until_ready=True):
            raise Unavailable(f"no connection to {self.address} within {timeout:g}s")

    async def first_connection(self, deadline: float) -> None:
        if not self.connected:
            await self._wait(deadline, until_ready=False)

    def away(self) -> float:
        return max(self._away_until - time.monotonic(), 0.0)

    def error(self, exc: grpc.RpcError) -> RunwireError:
        error = from_rpc_error(exc)
        if error.retry_delay:
            self._away_until = time.monotonic() + error.retry_delay
        return error

    async def explain(self, error: RunwireError) -> RunwireError:
        if isinstance(error, Unavailable | DeadlineExceeded) and self.channel.get_state() != _READY:
            mismatch = await _diagnosis(self.connection, _diagnose.PROBE_SECONDS)
            if mismatch is not None:
                mismatch.__cause__ = error
                return mismatch
        return error

    async def call(
        self,
        method: Callable[..., Awaitable[ResponseT]],
        request: Message,
        *,
        idempotent: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 (a gRPC deadline, as Client's)
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
                await asyncio.sleep(away)
            await self.first_connection(deadline)
            seconds = max(deadline - time.monotonic(), 0.001)
            try:
                return await method(
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
                raise await self.explain(error)
            await asyncio.sleep(_retry.call_backoff(attempt))
            attempt += 1

    async def stream(self, method: Callable[..., Any], request: Message) -> Any:
        await self.first_connection(time.monotonic() + self.timeout)
        return method(request, metadata=_tracing.outgoing(self.metadata), wait_for_ready=True)
