"""The one place where exceptions become gRPC statuses, and where every call is logged."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc.aio import AbortError

from runwire_server.errors import RunwireError, internal_status

log = structlog.get_logger("runwire.rpc")


async def _fail(context: grpc.aio.ServicerContext[Any, Any], method: str, exc: Exception) -> None:
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


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps RunwireError to its status with details; anything else to a bare INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=_bytes_or(handler.response_serializer),
            )
        return handler


def _bytes_or(serialize: Any) -> Any:
    """Streams may yield a message already serialized (an event fanned out to many watchers is
    serialized once, not once per watcher); other messages are serialized as usual."""

    def serializer(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return serializer


def _wrap_unary(behaviour: Any, method: str) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        try:
            response = behaviour(request, context)
            if inspect.isawaitable(response):
                response = await response
        except AbortError:
            raise
        except Exception as exc:
            await _fail(context, method, exc)
        log.debug("rpc", method=method, ms=round((time.perf_counter() - started) * 1000, 2))
        return response

    return call


def _wrap_stream(behaviour: Any, method: str) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            result = behaviour(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            else:
                await result
        except AbortError:
            raise
        except Exception as exc:
            await _fail(context, method, exc)

    return call
