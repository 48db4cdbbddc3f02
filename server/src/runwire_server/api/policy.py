"""What every call passes, whichever edge it came through (gRPC, or Connect and gRPC-Web over
HTTP): authentication and roles, draining, the call's deadline, request checks, stream quotas,
metrics, logs and, when tracing is on, a span per call. Each edge describes its calls with a
`Call` and turns the errors this raises into its own statuses; nothing here knows a
transport."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, NoReturn, Protocol

import structlog

from runwire_server import auth
from runwire_server.api.decoding import Pending
from runwire_server.api.limits import StreamQuota
from runwire_server.api.request_decoder import RequestDecoder
from runwire_server.deadlines import call_deadline
from runwire_server.errors import DeadlineExceeded, RunwireError, ShuttingDown
from runwire_server.metrics import Metrics

log = structlog.get_logger("runwire.rpc")
Behaviour = Callable[[Any], Any]


class Call(Protocol):
    """One call as an edge sees it."""

    @property
    def method(self) -> str:
        """`/runwire.v1.FlowRunService/GetFlowRun`: the same name on every edge."""

    @property
    def edge(self) -> str:
        """`grpc` or `http`, for the logs."""

    def metadata(self) -> Iterable[tuple[str, str | bytes]]:
        """The call's headers (gRPC metadata), names in lower case."""

    def time_remaining(self) -> float | None:
        """Seconds until the caller's deadline; None without one."""

    def peer(self) -> str:
        """The caller's host, without its port: one host's many connections are one client."""

    def own_code(self, exc: BaseException) -> str | None:
        """The status code of an error that is already the edge's own status (a gRPC abort),
        else None."""

    async def fail(self, exc: Exception) -> NoReturn:
        """End the call with the status for `exc`: a RunwireError's code and details,
        UNIMPLEMENTED for NotImplementedError, and a bare INTERNAL for anything else."""


class CallSpan(Protocol):
    """The span of one call (runwire_server.tracing)."""

    def activate(self) -> AbstractContextManager[object]:
        """The span as the current one, for what the call does while it lasts."""

    def note(self, message: Any) -> None:
        """The ids of the runs a request or response names."""

    def end(self, code: str) -> None:
        """End the span with the call's status code."""


class CallTracer(Protocol):
    def start(self, call: Call) -> CallSpan:
        """A span for `call`, continuing the trace its headers carry."""


def client_key(call: Call) -> str:
    """Whom a per-client quota counts against: the token's name, or else the peer's host."""
    identity = auth.caller.get()
    if identity is not None:
        return f"token {identity.name!r}"
    return peer_key(call)


def peer_key(call: Call) -> str:
    return f"peer {call.peer()}"


class CallPolicy:
    """One per server, shared by its edges: a client's quotas and the server's drain count
    every call, by whichever door it came."""

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

    def admit(self, call: Call, guarded: bool) -> auth.Identity | None:
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
                identity = self._auth.check(call.method, call.metadata())
                auth.caller.set(identity)
        remaining = call.time_remaining()
        if remaining is not None:
            if remaining <= 0:
                raise DeadlineExceeded("the deadline passed before the call started")
            call_deadline.set(time.monotonic() + remaining)
        return identity

    async def checked(self, request: Any, call: Call) -> Any:
        """The request decoded and checked (api.request_decoder); a large one counts against
        its client while it waits for a decoding worker."""
        client = client_key(call) if isinstance(request, Pending) else ""
        return await self._decoder.checked(request, client)

    def stream_slot(self, call: Call, guarded: bool) -> AbstractContextManager[None]:
        """A place among the caller's open streams: Runwire's own count per token (or peer
        without tokens), the open services' per peer, since they need no token."""
        if guarded:
            return self._streams.slot(client_key(call))
        return self._open_streams.slot(peer_key(call))

    async def unary(self, call: Call, guarded: bool, request: Any, behaviour: Behaviour) -> Any:
        """Serve one unary call: `behaviour(request)` once the call is admitted and its
        request checked."""
        started = time.perf_counter()
        code = "OK"
        self.in_flight += 1
        try:
            self.admit(call, guarded)
            request = await self.checked(request, call)
            response = behaviour(request)
            if inspect.isawaitable(response):
                response = await response
            return response
        except BaseException as exc:
            code = code_after(exc, call)
            await _fail(call, exc)
            raise
        finally:
            self.in_flight -= 1
            elapsed = time.perf_counter() - started
            self._metrics.call_finished(call.method, code, elapsed)
            log.debug(
                "rpc", method=call.method, edge=call.edge, code=code, ms=round(elapsed * 1000, 2)
            )

    async def stream(
        self, call: Call, guarded: bool, request: Any, behaviour: Behaviour
    ) -> AsyncGenerator[Any]:
        """Serve one server-streaming call: the items of `behaviour(request)`, each checked
        against the caller's token as it goes."""
        code = "OK"
        try:
            identity = self.admit(call, guarded)
            request = await self.checked(request, call)
            with self.stream_slot(call, guarded):
                result = behaviour(request)
                if not hasattr(result, "__aiter__"):
                    await result
                    return
                # Closed with the call: the watch behind it ends when its client goes.
                async with contextlib.aclosing(result):
                    if identity is None:
                        async for item in result:
                            yield item
                    else:
                        # A stream outlives the check that admitted it: it ends at its next
                        # message or heartbeat once its token has expired or been revoked.
                        check_token = auth.StreamCheck(
                            self._auth, identity, call.method, list(call.metadata())
                        )
                        async for item in result:
                            check_token()
                            yield item
        except BaseException as exc:
            code = code_after(exc, call)
            await _fail(call, exc)
            raise
        finally:
            self._metrics.call_finished(call.method, code, None)


class TracedCallPolicy(CallPolicy):
    """The call policy with a span around each of Runwire's own calls (health checks and
    reflection are left out: probes would bury the calls that matter). A server without
    tracing uses CallPolicy itself, and its calls pay nothing for tracing."""

    def __init__(self, *args: Any, tracer: CallTracer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracer = tracer

    async def unary(self, call: Call, guarded: bool, request: Any, behaviour: Behaviour) -> Any:
        if not guarded:
            return await super().unary(call, guarded, request, behaviour)
        span = self._tracer.start(call)
        code = "OK"
        try:
            with span.activate():
                response = await super().unary(call, guarded, request, _noting(span, behaviour))
            span.note(response)  # the ids the server gave what it created
            return response
        except BaseException as exc:
            code = code_after(exc, call)
            raise
        finally:
            span.end(code)

    async def stream(
        self, call: Call, guarded: bool, request: Any, behaviour: Behaviour
    ) -> AsyncGenerator[Any]:
        # One span for the stream's life. It is not made current: a generator's context is
        # its consumer's, and a stream closed from elsewhere could not restore it.
        span = self._tracer.start(call) if guarded else None
        code = "OK"
        try:
            if span is not None:
                behaviour = _noting(span, behaviour)
            items = super().stream(call, guarded, request, behaviour)
            async with contextlib.aclosing(items):
                async for item in items:
                    yield item
        except BaseException as exc:
            code = code_after(exc, call)
            raise
        finally:
            if span is not None:
                span.end(code)


def _noting(span: CallSpan, behaviour: Behaviour) -> Behaviour:
    """`behaviour`, noting the ids of the request it is given: the request as checked, which
    a large one is only once a decoding worker has passed it."""

    def noted(request: Any) -> Any:
        span.note(request)
        return behaviour(request)

    return noted


def code_after(exc: BaseException, call: Call) -> str:
    """The status code a call that raised `exc` ends with, for the metrics and traces."""
    own = call.own_code(exc)
    if own is not None:
        return own
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # Edges cancel the handler both when the client cancels and when the deadline passes.
        remaining = call.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    if isinstance(exc, RunwireError):
        return exc.code.name
    return "UNIMPLEMENTED" if isinstance(exc, NotImplementedError) else "INTERNAL"


async def _fail(call: Call, exc: BaseException) -> None:
    """End the call with the status for `exc`, logged; returns only for exceptions that are
    already a status or not errors of the call (cancellation), to be re-raised."""
    if call.own_code(exc) is not None or not isinstance(exc, Exception):
        return
    if isinstance(exc, RunwireError):
        log.info(
            "rpc.error",
            method=call.method,
            edge=call.edge,
            code=exc.code.name,
            reason=exc.reason,
            error=exc.message,
        )
    elif not isinstance(exc, NotImplementedError):
        log.error("rpc.internal", method=call.method, edge=call.edge, exc_info=exc)
    await call.fail(exc)
