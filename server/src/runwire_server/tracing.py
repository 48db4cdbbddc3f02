"""Tracing (RUNWIRE_TRACING=otlp): a SERVER span for each call of Runwire's API on either edge,
continuing the trace of the caller's W3C `traceparent` header, with the method, the status
code and the ids of the runs the call names; exported over OTLP/HTTP.

Only a server with tracing on imports this module (server.call_tracer), so that one without it
never loads OpenTelemetry. The exporter, the sampler and the service's name follow
OpenTelemetry's own variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER,
OTEL_SERVICE_NAME...), which the SDK reads itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from runwire_server.api.policy import Call

Headers = tuple[tuple[str, str | bytes], ...]

# The codes that are the server's fault rather than the caller's (OpenTelemetry's conventions
# for RPC server spans): only these mark a span as an error.
SERVER_FAULTS = frozenset(
    ("UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS")
)
# `rpc.system` of each edge: the HTTP edge speaks Connect (and gRPC-Web, through Connect's
# library).
SYSTEMS = {"grpc": "grpc", "http": "connect_rpc"}
# The request and response fields that name a run, a flow or a deployment, and the attribute
# each becomes; the same fields, and `id`, of a run, flow or deployment the message holds.
ID_FIELDS = {
    "flow_run_id": "runwire.flow_run_id",
    "task_run_id": "runwire.task_run_id",
    "flow_id": "runwire.flow_id",
    "deployment_id": "runwire.deployment_id",
}
OBJECT_FIELDS = {
    "flow_run": "runwire.flow_run_id",
    "task_run": "runwire.task_run_id",
    "flow": "runwire.flow_id",
    "deployment": "runwire.deployment_id",
}


def otlp_provider() -> TracerProvider:
    """Spans batched to the OTLP/HTTP endpoint the standard variables name
    (http://localhost:4318 without them)."""
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _resource() -> Resource:
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "runwire-server"}))
    return resource


class ServerTracer:
    """Starts each call's span (api.policy.CallTracer). Shuts down, on stop, the provider it
    was given to own; another's it only flushes."""

    def __init__(self, provider: TracerProvider, *, owned: bool) -> None:
        self._provider = provider
        self._owned = owned
        self._tracer = provider.get_tracer("runwire_server")
        # Per method and edge: the span's name and its first attributes (the SDK copies them).
        self._methods: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}

    def start(self, call: Call) -> CallSpan:
        known = self._methods.get((call.method, call.edge))
        if known is None:
            known = self._methods[call.method, call.edge] = _describe(call.method, call.edge)
        name, attributes = known
        # A tuple can be read once per header the propagators look for (an iterator could not).
        parent = propagate.extract(tuple(call.metadata()), getter=HEADERS)
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return CallSpan(span, call.edge)

    def close(self) -> None:
        """Export what is still buffered (blocks: call it off the event loop)."""
        if self._owned:
            self._provider.shutdown()
        else:
            self._provider.force_flush()


def _describe(method: str, edge: str) -> tuple[str, dict[str, str]]:
    name = method.lstrip("/")  # runwire.v1.FlowRunService/GetFlowRun
    service, _, short = name.partition("/")
    return name, {"rpc.system": SYSTEMS[edge], "rpc.service": service, "rpc.method": short}


class CallSpan:
    """One call's span (api.policy.CallSpan)."""

    __slots__ = ("_edge", "_span")

    def __init__(self, span: Span, edge: str) -> None:
        self._span = span
        self._edge = edge

    def activate(self) -> AbstractContextManager[object]:
        # The policy ends the span and sets its status from the call's code: an exception is
        # not always a fault (NOT_FOUND is an answer).
        return trace.use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    def note(self, message: Any) -> None:
        if isinstance(message, Message) and self._span.is_recording():
            for attribute, value in run_ids(message):
                self._span.set_attribute(attribute, value)

    def end(self, code: str) -> None:
        span = self._span
        if span.is_recording():
            if self._edge == "grpc":
                span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[code].value[0])
            elif code != "OK":
                # Connect's codes are gRPC's in lower case ("canceled" has one L).
                error = "canceled" if code == "CANCELLED" else code.lower()
                span.set_attribute("rpc.connect_rpc.error_code", error)
            if code in SERVER_FAULTS:
                span.set_status(Status(StatusCode.ERROR, code))
        span.end()


class _HeaderGetter(Getter[Headers]):
    """W3C trace context from an edge's headers (names in lower case, as both edges give)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [value for name, value in carrier if name == key and isinstance(value, str)]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


HEADERS = _HeaderGetter()


def run_ids(message: Message) -> Iterable[tuple[str, str]]:
    """The ids `message` names, as span attributes: its own id fields, and those of the run,
    flow or deployment it holds (CreateFlowRun's `flow_run`, say)."""
    for attribute, outer, field in _id_paths(message.DESCRIPTOR):
        holder: Any = message
        if outer:
            if not message.HasField(outer):
                continue
            holder = getattr(message, outer)
        value = getattr(holder, field)
        if value:
            yield attribute, value


@functools.cache
def _id_paths(descriptor: Descriptor) -> tuple[tuple[str, str, str], ...]:
    """Where a message type holds ids: (attribute, the object's field or "", the id field)."""
    paths: list[tuple[str, str, str]] = []
    for field in descriptor.fields:
        if field.is_repeated:  # CreateLogs' many logs: no one run
            continue
        if field.name in ID_FIELDS and field.type == FieldDescriptor.TYPE_STRING:
            paths.append((ID_FIELDS[field.name], "", field.name))
        elif field.name in OBJECT_FIELDS and field.message_type is not None:
            inner = field.message_type.fields_by_name
            if "id" in inner:
                paths.append((OBJECT_FIELDS[field.name], field.name, "id"))
            paths.extend(
                (ID_FIELDS[name], field.name, name)
                for name in ID_FIELDS
                if name in inner and inner[name].type == FieldDescriptor.TYPE_STRING
            )
    return tuple(paths)
