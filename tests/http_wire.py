"""The HTTP edge as its clients call it: Connect with JSON as curl would (a plain POST of
`application/json`), Connect's binary form (`application/proto`), streams of enveloped frames
(`application/connect+json`), gRPC-Web through the generated Connect clients (runwire.v1.*_connect)
and gRPC-Web written by hand; and what their errors carry, decoded."""

from __future__ import annotations

import base64
import importlib
import json
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2

from runwire_server.server import SERVICES

# Every method of every runwire.v1 service, as "FlowService/CreateFlow".
METHODS: dict[str, MethodDescriptor] = {
    f"{service.name}/{method.name}": method for service in SERVICES for method in service.methods
}

CONNECT_JSON, CONNECT_PROTO, GRPC_WEB, CONNECT_CLIENT = (
    "connect-json",
    "connect-proto",
    "grpc-web",
    "connect-client",
)

END_STREAM = 0x02  # Connect: the frame that ends a stream (JSON: error and trailers)
TRAILERS = 0x80  # gRPC-Web: the frame of trailers that ends a response


def path_of(method: str) -> str:
    """`FlowService/CreateFlow` -> `/runwire.v1.FlowService/CreateFlow`."""
    return f"/{METHODS[method].containing_service.full_name}/{METHODS[method].name}"


def response_type(method: str) -> type[Message]:
    return GetMessageClass(METHODS[method].output_type)


def envelope(data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


class Frames:
    """Splits a stream's bytes into its enveloped frames (flags, payload)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        self._buffer += chunk
        frames = []
        while len(self._buffer) >= 5:
            flags, length = struct.unpack(">BI", self._buffer[:5])
            if len(self._buffer) < 5 + length:
                break
            frames.append((flags, bytes(self._buffer[5 : 5 + length])))
            del self._buffer[: 5 + length]
        return frames

    @property
    def leftover(self) -> bytes:
        return bytes(self._buffer)


# --- errors ------------------------------------------------------------------------------------


def unbase64(value: str) -> bytes:
    """Connect's base64 (unpadded, standard or URL-safe alphabet)."""
    padded = value + "=" * (-len(value) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"))


@dataclass
class EdgeError(Exception):
    """A call that failed: Connect's code name (`not_found`), message and details, and the
    HTTP status of a Connect unary answer (streams and gRPC-Web answer 200)."""

    code: str
    message: str
    details: list[any_pb2.Any] = field(default_factory=list)
    http_status: int | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message} (HTTP {self.http_status})"

    def detail(self, kind: type[Message]) -> Any:
        """The detail of type `kind` (ErrorInfo, BadRequest, ResourceInfo...); None without."""
        for packed in self.details:
            if packed.type_url.rsplit("/", 1)[-1] == kind.DESCRIPTOR.full_name:
                message = kind()
                message.ParseFromString(packed.value)
                return message
        return None

    @property
    def info(self) -> error_details_pb2.ErrorInfo:
        info = self.detail(error_details_pb2.ErrorInfo)
        assert info is not None, f"no ErrorInfo in {self}"
        return info

    @property
    def reason(self) -> str:
        return self.info.reason

    @property
    def fields(self) -> list[str]:
        bad = self.detail(error_details_pb2.BadRequest)
        return [] if bad is None else [v.field for v in bad.field_violations]

    @classmethod
    def from_json(cls, document: Mapping[str, Any], http_status: int | None) -> EdgeError:
        """Connect's error body: {"code", "message", "details": [{"type", "value"}]}."""
        return cls(
            code=document["code"],
            message=document.get("message", ""),
            details=[
                any_pb2.Any(type_url=f"type.googleapis.com/{d['type']}", value=unbase64(d["value"]))
                for d in document.get("details", [])
            ],
            http_status=http_status,
        )

    @classmethod
    def from_connect(cls, error: ConnectError) -> EdgeError:
        """What a generated client raised."""
        return cls(
            code=error.code.value,
            message=error.message,
            details=[
                any_pb2.Any(type_url=f"type.googleapis.com/{d.type_name}", value=d.message_bytes)
                for d in error.details
            ],
        )

    @classmethod
    def from_grpc_status(cls, headers: Mapping[str, str]) -> EdgeError | None:
        """gRPC-Web's status in headers or trailers; None for OK."""
        status = int(headers.get("grpc-status", "2"))
        if status == 0:
            return None
        details: list[any_pb2.Any] = []
        if "grpc-status-details-bin" in headers:
            details = list(
                status_pb2.Status.FromString(unbase64(headers["grpc-status-details-bin"])).details
            )
        return cls(
            code=GRPC_CODES[status],
            message=unquote(headers.get("grpc-message", "")),
            details=details,
        )


GRPC_CODES = {
    1: "canceled",
    2: "unknown",
    3: "invalid_argument",
    4: "deadline_exceeded",
    5: "not_found",
    6: "already_exists",
    7: "permission_denied",
    8: "resource_exhausted",
    9: "failed_precondition",
    10: "aborted",
    11: "out_of_range",
    12: "unimplemented",
    13: "internal",
    14: "unavailable",
    15: "data_loss",
    16: "unauthenticated",
}


# --- one interface over the protocols ----------------------------------------------------------


class Stream:
    """An open server stream: its response headers, and its messages as they come. Iterating
    raises EdgeError when the stream ends with an error."""

    def __init__(self, messages: AsyncIterator[Message], headers: Mapping[str, str]) -> None:
        self._messages = messages
        self.headers = headers

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        return await anext(self._messages)

    async def read(self) -> Any:
        """The next message; fails the test if the stream ended instead."""
        try:
            return await anext(self._messages)
        except StopAsyncIteration:
            raise AssertionError("the stream ended") from None


class Edge:
    """Calls of one protocol on the HTTP edge. `called` collects the methods that answered."""

    name = ""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.called: set[str] = set()

    async def call(
        self, method: str, request: Message, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Call a unary method (`FlowService/GetFlow`); raises EdgeError."""
        response = await self._unary(method, request, dict(headers or {}))
        self.called.add(method)
        return response

    @asynccontextmanager
    async def stream(
        self, method: str, request: Message, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[Stream]:
        """Open a server stream; leaving the block closes it (the client goes away)."""
        async with self._stream(method, request, dict(headers or {})) as stream:
            yield Stream(self._recording(method, stream), stream.headers)

    async def _recording(self, method: str, stream: Stream) -> AsyncIterator[Message]:
        async for message in stream:
            self.called.add(method)
            yield message

    async def _unary(self, method: str, request: Message, headers: dict[str, str]) -> Any:
        raise NotImplementedError

    def _stream(
        self, method: str, request: Message, headers: dict[str, str]
    ) -> Any:  # an async context manager of a Stream
        raise NotImplementedError


class ConnectHttpx(Edge):
    """Connect as a plain HTTP client speaks it: a POST of the request in JSON or binary, the
    answer (or Connect's JSON error) in the body; streams as enveloped frames."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, *, binary: bool) -> None:
        super().__init__(base_url)
        self.http = http
        self.binary = binary
        self.name = CONNECT_PROTO if binary else CONNECT_JSON

    def encode(self, request: Message) -> bytes:
        if self.binary:
            return request.SerializeToString()
        return json_format.MessageToJson(request).encode()

    def decode(self, data: bytes, kind: type[Message]) -> Any:
        if self.binary:
            return kind.FromString(data)
        return json_format.Parse(data, kind())

    async def _unary(self, method: str, request: Message, headers: dict[str, str]) -> Any:
        response = await self.http.post(
            self.base_url + path_of(method),
            content=self.encode(request),
            headers={
                "content-type": "application/proto" if self.binary else "application/json",
                **headers,
            },
        )
        if response.status_code != 200:
            raise EdgeError.from_json(response.json(), response.status_code)
        expected = "application/proto" if self.binary else "application/json"
        assert response.headers["content-type"] == expected
        return self.decode(response.content, response_type(method))

    @asynccontextmanager
    async def _stream(
        self, method: str, request: Message, headers: dict[str, str]
    ) -> AsyncIterator[Stream]:
        kind = "proto" if self.binary else "json"
        async with self.http.stream(
            "POST",
            self.base_url + path_of(method),
            content=envelope(self.encode(request)),
            headers={"content-type": f"application/connect+{kind}", **headers},
        ) as response:
            assert response.status_code == 200, response.status_code
            assert response.headers["content-type"] == f"application/connect+{kind}"
            yield Stream(self._frames(response, response_type(method)), response.headers)

    async def _frames(self, response: httpx.Response, kind: type[Message]) -> AsyncIterator[Any]:
        frames = Frames()
        async for chunk in response.aiter_raw():
            for flags, payload in frames.feed(chunk):
                if flags & END_STREAM:
                    end = json.loads(payload)
                    if "error" in end:
                        raise EdgeError.from_json(end["error"], None)
                    assert not frames.leftover, "bytes after the end of the stream"
                    return
                assert flags == 0, f"unexpected frame flags {flags:#x}"
                yield self.decode(payload, kind)
        raise AssertionError("the stream ended without its end-of-stream frame")


class GeneratedClient(Edge):
    """The generated Connect clients (runwire.v1.*_connect), speaking gRPC-Web or Connect."""

    def __init__(
        self,
        base_url: str,
        protocol: ProtocolType,
        http_client: Any = None,
        codec: Any = None,
    ) -> None:
        super().__init__(base_url)
        self.name = GRPC_WEB if protocol is ProtocolType.GRPC_WEB else CONNECT_CLIENT
        self._clients: dict[str, Any] = {}
        for service in SERVICES:
            module = importlib.import_module(service.file.name[:-6].replace("/", ".") + "_connect")
            client = getattr(module, f"{service.name}Client")
            options: dict[str, Any] = {"protocol": protocol, "http_client": http_client}
            if codec is not None:
                options["codec"] = codec
            self._clients[service.name] = client(base_url, **options)

    def _method(self, method: str) -> Callable[..., Any]:
        """The generated client's own method (`get_flow`) for `FlowService/GetFlow`."""
        service, name = method.split("/")
        python_name = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
        return getattr(self._clients[service], python_name)  # type: ignore[no-any-return]

    async def _unary(self, method: str, request: Message, headers: dict[str, str]) -> Any:
        try:
            return await self._method(method)(request, headers=headers or None)
        except ConnectError as exc:
            raise EdgeError.from_connect(exc) from None

    @asynccontextmanager
    async def _stream(
        self, method: str, request: Message, headers: dict[str, str]
    ) -> AsyncIterator[Stream]:
        messages = self._method(method)(request, headers=headers or None)

        async def translated() -> AsyncIterator[Any]:
            try:
                async for message in messages:
                    yield message
            except ConnectError as exc:
                raise EdgeError.from_connect(exc) from None

        try:
            yield Stream(translated(), {})
        finally:
            await messages.aclose()


# --- gRPC-Web by hand: the status in headers or trailers, and the response headers ------------


@dataclass
class GrpcWebAnswer:
    headers: httpx.Headers
    messages: list[bytes]
    error: EdgeError | None


def grpc_web_request(request: Message) -> bytes:
    return envelope(request.SerializeToString())


def grpc_web_answer(response: httpx.Response, body: bytes) -> GrpcWebAnswer:
    """A gRPC-Web response: messages, then trailers (or a trailers-only answer's headers)."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    for flags, payload in Frames().feed(body):
        if flags & TRAILERS:
            for line in payload.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    status = trailers if "grpc-status" in trailers else dict(response.headers)
    return GrpcWebAnswer(response.headers, messages, EdgeError.from_grpc_status(status))


async def grpc_web_call(
    http: httpx.AsyncClient,
    base_url: str,
    method: str,
    request: Message,
    headers: Mapping[str, str] | None = None,
) -> GrpcWebAnswer:
    response = await http.post(
        base_url + path_of(method),
        content=grpc_web_request(request),
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            **(headers or {}),
        },
    )
    assert response.status_code == 200, response.status_code
    return grpc_web_answer(response, response.content)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
