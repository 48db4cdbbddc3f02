"""The gRPC edge's one interceptor: every call passes the server's call policy (api.policy),
and its errors become gRPC statuses with their details."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, NoReturn

import grpc
from grpc.aio import AbortError

from runwire_server import auth
from runwire_server.api.decoding import Undecodable, tolerant
from runwire_server.api.policy import CallPolicy
from runwire_server.errors import RunwireError, internal_status

Context = grpc.aio.ServicerContext[Any, Any]


class GrpcCall:
    """A gRPC call, as the call policy sees it."""

    __slots__ = ("_context", "method")
    edge = "grpc"

    def __init__(self, method: str, context: Context) -> None:
        self.method = method
        self._context = context

    def metadata(self) -> Iterable[tuple[str, str | bytes]]:
        return self._context.invocation_metadata() or ()

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def peer(self) -> str:
        # "ipv4:127.0.0.1:5123", "ipv6:[::1]:5123": the host alone, as the HTTP edge has it.
        kind, _, rest = self._context.peer().partition(":")
        if kind in ("ipv4", "ipv6"):
            return rest.rsplit(":", 1)[0].strip("[]")
        return self._context.peer()

    def own_code(self, exc: BaseException) -> str | None:
        if isinstance(exc, AbortError):
            code = self._context.code()
            return "UNKNOWN" if code is None else code.name
        return None

    async def fail(self, exc: Exception) -> NoReturn:
        if isinstance(exc, RunwireError):
            await self._context.abort_with_status(exc.to_status())
        if isinstance(exc, NotImplementedError):
            # The generated base servicers raise this for RPCs a later release implements.
            await self._context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"{self.method} is not implemented yet"
            )
        await self._context.abort_with_status(internal_status())
        raise AssertionError("abort returned")  # abort always raises


class ApiInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler in the call policy; RunwireError becomes its status with details,
    anything else a bare INTERNAL (logged with its traceback)."""

    def __init__(self, policy: CallPolicy) -> None:
        self.policy = policy
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

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
        policy = self.policy
        if handler.unary_unary is not None:
            unary: Any = handler.unary_unary

            async def unary_call(request: Any, context: Context) -> Any:
                call = GrpcCall(method, context)
                return await policy.unary(call, guarded, request, lambda r: unary(r, context))

            return grpc.unary_unary_rpc_method_handler(
                unary_call,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream: Any = handler.unary_stream

            async def stream_call(request: Any, context: Context) -> AsyncIterator[Any]:
                call = GrpcCall(method, context)
                items = policy.stream(call, guarded, request, lambda r: stream(r, context))
                async with contextlib.aclosing(items):  # gRPC runs only generator functions
                    async for item in items:
                        yield item

            return grpc.unary_stream_rpc_method_handler(
                stream_call,
                request_deserializer=deserializer,
                response_serializer=_bytes_or(handler.response_serializer),
            )
        if handler.stream_stream is not None:  # reflection
            both: Any = handler.stream_stream  # asyncio: takes an async iterator

            async def both_call(
                requests: AsyncIterator[Any], context: Context
            ) -> AsyncIterator[Any]:
                # The request of the wrapped behaviour is the stream of requests: it passes
                # admission as it is, and each request is checked as it is read.
                call = GrpcCall(method, context)
                items = policy.stream(call, guarded, requests, lambda r: both(_decoded(r), context))
                async with contextlib.aclosing(items):
                    async for item in items:
                        yield item

            return grpc.stream_stream_rpc_method_handler(
                both_call,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming methods are served


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's requests, refusing the first one that did not decode."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.refusal()
        yield request


def _bytes_or(serialize: Any) -> Any:
    """Streams may yield a message already serialized (an event fanned out to many watchers is
    serialized once, not once per watcher); other messages are serialized as usual."""

    def serializer(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return serializer
