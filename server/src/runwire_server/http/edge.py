"""The HTTP edge as one ASGI application: each runwire.v1 service's generated Connect
application (runwire.v1.*_connect), calling the gRPC edge's own handlers through the same call
policy, so that both doors serve the same API with the same rules; `/healthz` for load
balancers that probe over HTTP; and the web dashboard (runwire_server.http.dashboard) at `/`."""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from types import SimpleNamespace
from typing import Any, NoReturn

from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.request import RequestContext
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from protobuf.wkt import Any as AnyDetail
from starlette.middleware.cors import CORSMiddleware

from runwire_server.api.policy import CallPolicy
from runwire_server.errors import Internal, RunwireError
from runwire_server.http.codecs import BinaryCodec, Encoded, JsonCodec
from runwire_server.http.compression import SingleMemberGzip
from runwire_server.http.dashboard import Dashboard
from runwire_server.startup_checks import is_loopback

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

CODECS = (BinaryCodec(), JsonCodec())
COMPRESSIONS = (SingleMemberGzip(),)
# What a browser on another origin may send and read (Connect's and gRPC-Web's headers).
CORS_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "traceparent",
    "tracestate",
)
CORS_RESPONSE_HEADERS = ("grpc-status", "grpc-message", "grpc-status-details-bin")
# Proxies that buffer responses (nginx, say) pass a stream's messages, heartbeats included,
# as they come when the response asks them to.
STREAM_HEADERS = (("x-accel-buffering", "no"), ("cache-control", "no-store"))


class HttpCall:
    """A Connect or gRPC-Web call, as the call policy sees it."""

    __slots__ = ("_ctx", "method")
    edge = "http"

    def __init__(self, method: str, ctx: RequestContext[Any, Any]) -> None:
        self.method = method
        self._ctx = ctx

    def metadata(self) -> Iterable[tuple[str, str | bytes]]:
        return self._ctx.request_headers.allitems()

    def time_remaining(self) -> float | None:
        remaining = self._ctx.timeout_ms
        return None if remaining is None else remaining / 1000

    def peer(self) -> str:
        address = self._ctx.client_address or "unknown"
        return address.rsplit(":", 1)[0].strip("[]")

    def own_code(self, exc: BaseException) -> str | None:
        if isinstance(exc, ConnectError):
            return "CANCELLED" if exc.code is Code.CANCELED else exc.code.name
        return None

    async def fail(self, exc: Exception) -> NoReturn:
        raise connect_error(exc) from None


def connect_error(exc: Exception) -> ConnectError:
    """The Connect error for what a handler raised: a RunwireError's code, message and
    details (ErrorInfo, BadRequest...), as the gRPC edge sends them."""
    if isinstance(exc, NotImplementedError):
        return ConnectError(Code.UNIMPLEMENTED, "this method is not implemented yet")
    error = exc if isinstance(exc, RunwireError) else Internal()
    code = Code.CANCELED if error.code.name == "CANCELLED" else Code[error.code.name]
    details = [
        ErrorDetail(AnyDetail(type_url=packed.type_url, value=packed.value))
        for packed in error.details()
    ]
    return ConnectError(code, error.message, details)


def _python_name(method: str) -> str:
    """The name the Connect generator gives a method's handler: GetFlowRun -> get_flow_run."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", method).lower()


def _handlers(servicer: Any, service: ServiceDescriptor, policy: CallPolicy) -> SimpleNamespace:
    """The service as the generated Connect application calls it: each method passes the
    call policy, then calls the gRPC servicer's handler of the same name."""
    handlers: dict[str, Any] = {}
    for method in service.methods:
        name = f"/{service.full_name}/{method.name}"
        behaviour = getattr(servicer, method.name)
        if method.server_streaming:
            handlers[_python_name(method.name)] = _stream(name, behaviour, method, policy)
        else:
            handlers[_python_name(method.name)] = _unary(name, behaviour, policy)
    return SimpleNamespace(**handlers)


def _unary(name: str, behaviour: Any, policy: CallPolicy) -> Any:
    async def call(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        return await policy.unary(HttpCall(name, ctx), True, request, lambda r: behaviour(r, None))

    return call


def _stream(name: str, behaviour: Any, method: MethodDescriptor, policy: CallPolicy) -> Any:
    response: type[Message] = GetMessageClass(method.output_type)

    async def call(request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
        for header, value in STREAM_HEADERS:
            ctx.response_headers[header] = value
        items = policy.stream(HttpCall(name, ctx), True, request, lambda r: behaviour(r, None))
        # Closed at once when the client goes: its watch and its quota slot end with it.
        async with contextlib.aclosing(items):
            async for item in items:
                yield Encoded(item, response) if isinstance(item, bytes) else item

    return call


def service_application(
    service: ServiceDescriptor, servicer: Any, policy: CallPolicy, max_message_bytes: int
) -> Asgi:
    """The generated Connect application of `service`, serving `servicer`'s handlers."""
    module = importlib.import_module(service.file.name.replace("/", ".")[:-6] + "_connect")
    application: Any = getattr(module, f"{service.name}ASGIApplication")
    app: Asgi = application(
        _handlers(servicer, service, policy),
        read_max_bytes=max_message_bytes,
        codecs=CODECS,
        compressions=COMPRESSIONS,
    )
    return app


class HttpEdge:
    """Routes each request to its service's application by the path's first part
    (`/runwire.v1.FlowRunService/GetFlowRun`)."""

    def __init__(
        self,
        services: Mapping[str, Asgi],
        methods: Iterable[str],
        grpc_address: str,
        ready: Callable[[], bool],
        local_only: Callable[[], bool],
        dashboard: Dashboard | None = None,
    ):
        self._services = dict(services)
        self._methods = frozenset(methods)  # `/runwire.v1.FlowRunService/GetFlowRun`
        self._grpc_address = grpc_address
        self._ready = ready
        self._local_only = local_only
        self._dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan events: the server starts and stops the edge itself
        head = _Head(scope)
        if self._local_only() and not head.local:
            # A server that lets anyone on this machine in must not let in a web page that
            # reaches it through a name of its own (DNS rebinding): the browser would take the
            # page and the server for one origin, and let the page read and write.
            await _answer(
                send,
                403,
                Code.PERMISSION_DENIED,
                "this server has no tokens and answers only requests addressed to a loopback "
                "host (127.0.0.1, localhost, [::1]); configure tokens to serve other names",
            )
            return
        if head.unreadable is not None:
            await _answer(
                send,
                400,
                Code.INVALID_ARGUMENT,
                f"the value of the header {head.unreadable!r} is not UTF-8 text",
            )
            return
        path: str = scope["path"]
        service = self._services.get(path[1:].partition("/")[0])
        if service is not None and path in self._methods:
            grpc_proper = head.content_type.startswith("application/grpc")
            if grpc_proper and not head.content_type.startswith("application/grpc-web"):
                await _answer(
                    send,
                    415,
                    Code.UNIMPLEMENTED,
                    "gRPC over HTTP/2 is served on the gRPC port "
                    f"({self._grpc_address}); this port speaks Connect and gRPC-Web",
                )
                return
            await service(scope, receive, send)
        elif path == "/healthz" and scope["method"] in ("GET", "HEAD"):
            if self._ready():
                await _answer(send, 200, None, "serving")
            else:
                await _answer(send, 503, Code.UNAVAILABLE, "server shutting down")
        elif (
            scope["method"] in ("GET", "HEAD")
            and self._dashboard is not None
            and self._dashboard.serves(path)
        ):
            await self._dashboard(scope, receive, send)
        else:
            await _answer(
                send,
                404,
                Code.UNIMPLEMENTED,
                f"no such method: {path[:200]!r}; methods are POSTed to "
                "/runwire.v1.<Service>/<Method>",
            )


class _Head:
    """What the edge reads of a request's headers, in one pass over them."""

    __slots__ = ("content_type", "host", "unreadable")

    def __init__(self, scope: Scope) -> None:
        self.host = self.content_type = ""
        # A header whose value is not UTF-8: connectrpc reads every value as UTF-8, and would
        # answer such a request with UNKNOWN.
        self.unreadable: str | None = None
        for key, value in scope.get("headers", ()):
            if key == b"host":
                self.host = value.decode("latin-1").lower()
            elif key == b"content-type":
                self.content_type = value.decode("latin-1").lower()
            if self.unreadable is None and not value.isascii():
                try:
                    value.decode()
                except UnicodeDecodeError:
                    self.unreadable = key.decode("latin-1")[:100]

    @property
    def local(self) -> bool:
        """Whether the request names a loopback host (HTTP/1.1 requires a Host header)."""
        host, bracketed = self.host, self.host.startswith("[")
        if (bracketed and "]:" not in host) or (not bracketed and host.count(":") != 1):
            host += ":0"  # no port (is_loopback takes host:port)
        name = host.rpartition(":")[0].strip("[]")
        return name.endswith(".localhost") or is_loopback(host)


async def _answer(send: Send, status: int, code: Code | None, message: str) -> None:
    body = (
        json.dumps({"status": message})
        if code is None
        else json.dumps({"code": code.value, "message": message})
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def http_application(
    servicers: Sequence[tuple[ServiceDescriptor, Any]],
    policy: CallPolicy,
    *,
    max_message_bytes: int,
    grpc_address: str,
    cors_allowed_origins: Sequence[str],
    local_only: Callable[[], bool],
) -> Asgi:
    """The whole HTTP edge, with CORS for the allowed origins (none: no CORS headers, and
    browsers keep pages of other origins out). `local_only`: whether the server now lets in
    anyone who reaches it (no tokens, no client certificates)."""
    edge: Asgi = HttpEdge(
        {
            service.full_name: service_application(service, servicer, policy, max_message_bytes)
            for service, servicer in servicers
        },
        (
            f"/{service.full_name}/{method.name}"
            for service, _ in servicers
            for method in service.methods
        ),
        grpc_address,
        lambda: not policy.draining,
        local_only,
        Dashboard.load(),
    )
    if not cors_allowed_origins:
        return edge
    cors: Asgi = CORSMiddleware(
        edge,
        allow_origins=list(cors_allowed_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=list(CORS_REQUEST_HEADERS),
        expose_headers=list(CORS_RESPONSE_HEADERS),
        max_age=7200,
    )
    return cors
