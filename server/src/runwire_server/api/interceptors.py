"""The one place every call passes: authentication, request limits, the call's deadline,
metrics, logging, and the mapping of exceptions to gRPC statuses."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import grpc
import structlog
from grpc.aio import AbortError

from runwire_server import auth
from runwire_server.api.decoding import Pending, Undecodable, tolerant
from runwire_server.api.limits import StreamQuota, client_key, peer_key
from runwire_server.api.request_decoder import RequestDecoder
from runwire_server.deadlines import call_deadline
from runwire_server.errors import DeadlineExceeded, RunwireError, ShuttingDown, internal_status
from runwire_server.metrics import Metrics

log = structlog.get_logger("runwire.rpc")
Context = grpc.aio.ServicerContext[Any, Any]


class ApiInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler; RunwireError becomes its status with details, anything else a
    bare INTERNAL (logged with its traceback)."""

    def __init__(
        self,
        authenticator: auth.Authenticator,
        metrics: Metrics,
        *,
        streams: StreamQuota,
        open_streams: StreamQuota,
        decoder: RequestDecoder,
    ) -> None:
        self._auth = authenticator
        self._decoder = decoder
        self._metrics = metrics
        self._streams = streams  # Runwire's own streams, per token or peer
        self._open_streams = open_streams  # health and reflection streams, per peer
        self.draining = False
        self.drain_ends = 0.0  # monotonic time the drain gives up waiting for quiet
        self.in_flight = 0  # unary calls being served
        self.last_arrival = 0.0
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def drain(self, max_seconds: float, quiet_seconds: float = 0.25) -> None:
        """Answer new calls with UNAVAILABLE (retry elsewhere) until the calls in flight are
        done and none has arrived for `quiet_seconds`.

        gRPC's own shutdown cancels every call it has received but not yet handed to the
        application, and clients see CANCELLED, which they must not retry. Stopping only once
        the server is idle means each call is either answered or refused before it starts; the
        refusals' RetryInfo keeps their clients away until the server has surely stopped, so
        that none comes back in the instant gRPC shuts down.
        """
        self.draining = True
        deadline = self.drain_ends = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            idle = time.monotonic() - self.last_arrival >= quiet_seconds
            if idle and self.in_flight == 0:
                return
            await asyncio.sleep(quiet_seconds / 4)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        # gRPC asks for every call; the wrapped handler of a method never changes, so it is
        # built once and the per-method facts (open to all, streaming) are settled then.
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None
            wrapped = self._handlers[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        guarded = not method.startswith(auth.OPEN_SERVICES)
        deserializer = tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, guarded),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, guarded),
                request_deserializer=deserializer,
                response_serializer=_bytes_or(handler.response_serializer),
            )
        if handler.stream_stream is not None:  # reflection
            stream_stream: Any = handler.stream_stream  # asyncio: takes an async iterator
            return grpc.stream_stream_rpc_method_handler(
                # The request of the wrapped behaviour is the stream of requests: it passes
                # admission as it is, and each request is checked as it is read.
                self._wrap_stream(
                    lambda requests, context: stream_stream(_decoded(requests), context),
                    method,
                    guarded,
                ),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming methods are served

    def _admit(self, method: str, guarded: bool, context: Context) -> auth.Identity | None:
        """Refuse the call before any work if the caller is not allowed.
        `guarded`: the method is Runwire's own (health and reflection are open to all).
        Returns the caller's identity when the server has tokens."""
        self.last_arrival = time.monotonic()
        identity = None
        if guarded:
            if self.draining:
                # Stay away until the server has surely stopped: its drain's latest end, and
                # a second for gRPC's own shutdown (see drain).
                raise ShuttingDown(
                    "server shutting down; retry on another replica or after restart",
                    retry_delay=max(0.0, self.drain_ends - time.monotonic()) + 1.0,
                )
            if self._auth.enabled:
                identity = self._auth.check(method, context.invocation_metadata())
                auth.caller.set(identity)
        remaining = context.time_remaining()
        if remaining is not None:
            if remaining <= 0:
                raise DeadlineExceeded("the deadline passed before the call started")
            call_deadline.set(time.monotonic() + remaining)
        return identity

    async def _checked(self, request: Any, context: Context) -> Any:
        # A large request counts against its client while it waits for a decoding worker.
        client = client_key(context) if isinstance(request, Pending) else ""
        return await self._decoder.checked(request, client)

    def _stream_slot(self, guarded: bool, context: Context) -> AbstractContextManager[None]:
        """A place among the caller's open streams: Runwire's own count per token (or peer
        without tokens), the open services' per peer, since they need no token."""
        if guarded:
            return self._streams.slot(client_key(context))
        return self._open_streams.slot(peer_key(context))

    def _wrap_unary(self, behaviour: Any, method: str, guarded: bool) -> Any:
        async def call(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            code = "OK"
            self.in_flight += 1
            try:
                self._admit(method, guarded, context)
                request = await self._checked(request, context)
                response = behaviour(request, context)
                if inspect.isawaitable(response):
                    response = await response
                return response
            except BaseException as exc:
                code = _code_after(exc, context)
                await _fail(context, method, exc)
                raise
            finally:
                self.in_flight -= 1
                elapsed = time.perf_counter() - started
                self._metrics.call_finished(method, code, elapsed)
                log.debug("rpc", method=method, code=code, ms=round(elapsed * 1000, 2))

        return call

    def _wrap_stream(self, behaviour: Any, method: str, guarded: bool) -> Any:
        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            code = "OK"
            try:
                identity = self._admit(method, guarded, context)
                request = await self._checked(request, context)
                with self._stream_slot(guarded, context):
                    result = behaviour(request, context)
                    if not hasattr(result, "__aiter__"):
                        await result
                    elif identity is None:
                        async for item in result:
                            yield item
                    else:
                        # A stream outlives the check that admitted it: it ends at its next
                        # message or heartbeat once its token has expired or been revoked.
                        check_token = auth.StreamCheck(
                            self._auth, identity, method, context.invocation_metadata()
                        )
                        async with contextlib.aclosing(result):
                            async for item in result:
                                check_token()
                                yield item
            except BaseException as exc:
                code = _code_after(exc, context)
                await _fail(context, method, exc)
                raise
            finally:
                self._metrics.call_finished(method, code, None)

        return call


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's requests, refusing the first one that did not decode."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.refusal()
        yield request


def _code_after(exc: BaseException, context: Context) -> str:
    """The status code a call that raised `exc` ends with, for the metrics."""
    if isinstance(exc, AbortError):
        code = context.code()
        return "UNKNOWN" if code is None else code.name
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # gRPC cancels the handler both when the client cancels and when the deadline passes.
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    if isinstance(exc, RunwireError):
        return exc.code.name
    return "UNIMPLEMENTED" if isinstance(exc, NotImplementedError) else "INTERNAL"


async def _fail(context: Context, method: str, exc: BaseException) -> None:
    """Abort the call with the status for `exc`; returns only for exceptions that are already
    a status (AbortError) or not errors of the call (cancellation), to be re-raised."""
    if isinstance(exc, AbortError) or not isinstance(exc, Exception):
        return
    if isinstance(exc, RunwireError):
        log.info(
            "rpc.error", method=method, code=exc.code.name, reason=exc.reason, error=exc.message
        )
        await context.abort_with_status(exc.to_status())
    if isinstance(exc, NotImplementedError):
        # The generated base servicers raise this for RPCs a later release implements.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    log.error("rpc.internal", method=method, exc_info=exc)
    await context.abort_with_status(internal_status())


def _bytes_or(serialize: Any) -> Any:
    """Streams may yield a message already serialized (an event fanned out to many watchers is
    serialized once, not once per watcher); other messages are serialized as usual."""

    def serializer(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return serializer
