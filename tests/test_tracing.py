"""Tracing: a server span per call on both edges that continues the caller's trace (W3C
traceparent), sent by the runwire clients from the current span; OTLP export to a real
collector endpoint; and nothing at all, not even an import of OpenTelemetry, when off."""

from __future__ import annotations

import asyncio
import http.server
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import runwire
from runwire import AsyncClient, Client
from runwire.v1 import flow_run_service_pb2_grpc, watch_pb2
from runwire_server.api.policy import CallPolicy
from runwire_server.server import RunningServer, serving
from runwire_server.settings import ConfigurationError, Settings
from runwire_server.tracing import ServerTracer
from tests.conftest import make_settings
from tests.helpers import unique

GET_FLOW_RUN = "runwire.v1.FlowRunService/GetFlowRun"
MISSING_RUN = "00000000-0000-7000-8000-000000000000"


@dataclass
class Traced:
    server: RunningServer
    spans: InMemorySpanExporter

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


@asynccontextmanager
async def traced_server(tmp_path: Path) -> AsyncIterator[Traced]:
    """A server whose spans land in memory as each call ends."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    async with serving(make_settings(tmp_path / "traced.db"), tracer_provider=provider) as running:
        yield Traced(running, spans)


@pytest.fixture
def caller() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    """The calling program's own tracer, of a provider apart from the server's."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider.get_tracer("caller"), spans
    provider.shutdown()


def continues(span: ReadableSpan, parent: Any) -> None:
    """`span` is a server span whose parent is `parent`, of the same trace."""
    assert span.kind is SpanKind.SERVER
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == parent.context.trace_id
    assert span.parent.span_id == parent.context.span_id
    assert span.parent.is_remote


def traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"


async def test_client_calls_continue_the_callers_trace_with_method_code_and_run_id(
    tmp_path, caller
) -> None:
    tracer, _ = caller
    async with (
        traced_server(tmp_path) as traced,
        AsyncClient(f"127.0.0.1:{traced.server.port}", timeout=10) as client,
    ):
        flow = await client.create_flow(unique("traced"))
        run = await client.create_flow_run(flow.flow_id)
        with tracer.start_as_current_span("caller") as parent:
            await client.get_flow_run(run.flow_run_id)

        span = traced.one(GET_FLOW_RUN)
        continues(span, parent)
        assert span.attributes is not None
        assert dict(span.attributes) == {
            "rpc.system": "grpc",
            "rpc.service": "runwire.v1.FlowRunService",
            "rpc.method": "GetFlowRun",
            "rpc.grpc.status_code": 0,
            "runwire.flow_run_id": run.flow_run_id,
            "runwire.flow_id": flow.flow_id,  # from the run in the response
        }
        assert span.status.status_code is StatusCode.UNSET
        # A run the server created is named by the id it gave it, in a trace of its own when
        # no span was current.
        created = traced.one("runwire.v1.FlowRunService/CreateFlowRun")
        assert created.parent is None
        assert created.attributes is not None
        assert created.attributes["runwire.flow_run_id"] == run.flow_run_id
        assert created.attributes["runwire.flow_id"] == flow.flow_id

        # The blocking client too, from a span current in its own thread.
        def blocking() -> Any:
            with (
                Client(f"127.0.0.1:{traced.server.port}", timeout=10) as sync,
                tracer.start_as_current_span("blocking caller") as outer,
            ):
                task = sync.create_task_run(run.flow_run_id, "a")
            return outer, task

        outer, task = await asyncio.to_thread(blocking)
        span = traced.one("runwire.v1.TaskRunService/CreateTaskRun")
        continues(span, outer)
        assert span.attributes is not None
        assert span.attributes["runwire.task_run_id"] == task.task_run_id
        assert span.attributes["runwire.flow_run_id"] == run.flow_run_id


async def test_an_error_has_its_code_and_only_a_server_fault_is_an_error_span(
    tmp_path, caller
) -> None:
    tracer, _ = caller
    async with (
        traced_server(tmp_path) as traced,
        AsyncClient(f"127.0.0.1:{traced.server.port}", timeout=10, retries=0) as client,
    ):
        with tracer.start_as_current_span("caller") as parent, pytest.raises(runwire.NotFound):
            await client.get_flow_run(MISSING_RUN)
        span = traced.one(GET_FLOW_RUN)
        continues(span, parent)
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert span.attributes["runwire.flow_run_id"] == MISSING_RUN
        assert span.status.status_code is StatusCode.UNSET  # the caller's mistake


def test_server_faults_mark_the_span_as_an_error() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = ServerTracer(provider, owned=True)

    @dataclass
    class Call:
        method: str = f"/{GET_FLOW_RUN}"
        edge: str = "http"

        def metadata(self) -> tuple[tuple[str, str], ...]:
            return ()

    for code in ("INTERNAL", "UNAVAILABLE", "NOT_FOUND", "CANCELLED"):
        tracer.start(Call()).end(code)  # type: ignore[arg-type]
    tracer.close()
    ended = {
        span.attributes["rpc.connect_rpc.error_code"]: span.status.status_code
        for span in spans.get_finished_spans()
        if span.attributes is not None
    }
    assert ended == {
        "internal": StatusCode.ERROR,
        "unavailable": StatusCode.ERROR,
        "not_found": StatusCode.UNSET,
        "canceled": StatusCode.UNSET,
    }


async def test_http_calls_continue_the_trace_of_their_traceparent_header(tmp_path) -> None:
    trace_id, span_id = uuid.uuid4().int, uuid.uuid4().int >> 64
    async with traced_server(tmp_path) as traced:
        base = f"http://127.0.0.1:{traced.server.http_port}"
        async with (
            AsyncClient(f"127.0.0.1:{traced.server.port}", timeout=10) as client,
            httpx.AsyncClient(base_url=base, timeout=10) as web,
        ):
            run = await client.create_flow_run((await client.create_flow(unique("web"))).flow_id)
            for run_id in (run.flow_run_id, MISSING_RUN):
                response = await web.post(
                    f"/{GET_FLOW_RUN}",
                    json={"flowRunId": run_id},
                    headers={"traceparent": traceparent(trace_id, span_id)},
                )
                assert response.status_code == (200 if run_id == run.flow_run_id else 404)

        found, missing = traced.named(GET_FLOW_RUN)
        for span, run_id in ((found, run.flow_run_id), (missing, MISSING_RUN)):
            assert span.kind is SpanKind.SERVER
            assert span.context is not None and span.parent is not None
            assert (span.context.trace_id, span.parent.span_id) == (trace_id, span_id)
            assert span.attributes is not None
            assert span.attributes["rpc.system"] == "connect_rpc"
            assert span.attributes["rpc.method"] == "GetFlowRun"
            assert span.attributes["runwire.flow_run_id"] == run_id
        assert found.attributes is not None and missing.attributes is not None
        assert "rpc.connect_rpc.error_code" not in found.attributes
        assert missing.attributes["rpc.connect_rpc.error_code"] == "not_found"


async def test_a_stream_has_one_span_for_its_life(tmp_path) -> None:
    trace_id, span_id = uuid.uuid4().int, uuid.uuid4().int >> 64
    async with traced_server(tmp_path) as traced:
        async with AsyncClient(f"127.0.0.1:{traced.server.port}", timeout=10) as client:
            run = await client.create_flow_run((await client.create_flow(unique("w"))).flow_id)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.server.port}") as channel:
            runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
            stream = runs.WatchFlowRun(
                watch_pb2.WatchFlowRunRequest(flow_run_id=run.flow_run_id),
                metadata=(("traceparent", traceparent(trace_id, span_id)),),
            )
            await stream.read()
            await stream.read()
            assert not traced.named("runwire.v1.FlowRunService/WatchFlowRun")  # still open
            stream.cancel()
            await wait_until(lambda: traced.named("runwire.v1.FlowRunService/WatchFlowRun"))
        span = traced.one("runwire.v1.FlowRunService/WatchFlowRun")
        assert span.context is not None and span.parent is not None
        assert (span.context.trace_id, span.parent.span_id) == (trace_id, span_id)
        assert span.attributes is not None
        assert span.attributes["runwire.flow_run_id"] == run.flow_run_id
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]


async def wait_until(predicate: Callable[[], Any], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail("timed out")


@contextmanager
def otlp_collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP endpoint on loopback that keeps what it is sent."""
    received: list[ExportTraceServiceRequest] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{collector.server_address[1]}", received
    finally:
        collector.shutdown()
        collector.server_close()


async def test_tracing_otlp_exports_to_the_standard_endpoint(tmp_path, monkeypatch) -> None:
    with otlp_collector() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        async with (
            serving(make_settings(tmp_path / "otlp.db", tracing="otlp")) as running,
            AsyncClient(f"127.0.0.1:{running.port}", timeout=10) as client,
        ):
            await client.create_flow(unique("otlp"))
        # Stopping flushed the batch.
        resources = [r for request in received for r in request.resource_spans]
        names = {span.name for r in resources for scope in r.scope_spans for span in scope.spans}
        assert "runwire.v1.FlowService/CreateFlow" in names
        services = {
            a.value.string_value
            for r in resources
            for a in r.resource.attributes
            if a.key == "service.name"
        }
        assert services == {"runwire-server"}


def test_tracing_takes_off_or_otlp() -> None:
    with pytest.raises(ConfigurationError, match="RUNWIRE_TRACING must be one of off, otlp"):
        Settings.load(environ={"RUNWIRE_TRACING": "jaeger"})
    assert Settings.load(environ={}).tracing == "off"


def run_python(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "sub.db")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )


# A server's calls over both edges and both clients, in a process of its own.
CALLS = """
import asyncio, sys
import httpx
from runwire import AsyncClient, Client
from runwire_server.log_config import configure_logging
from runwire_server.server import serving
from runwire_server.settings import Settings

async def main():
    configure_logging("WARNING", "console")
    settings = Settings.load(
        {"listen_address": "127.0.0.1:0", "http_address": "127.0.0.1:0",
         "database_url": f"sqlite:///{sys.argv[1]}", **OVERRIDES},
        environ={},
    )
    async with serving(settings) as running:
        async with AsyncClient(f"127.0.0.1:{running.port}", timeout=10) as client:
            flow = await client.create_flow("quiet")
        def blocking():
            with Client(f"127.0.0.1:{running.port}", timeout=10) as sync:
                sync.get_flow(flow.flow_id)
        await asyncio.to_thread(blocking)
        async with httpx.AsyncClient(timeout=10) as web:
            response = await web.post(
                f"http://127.0.0.1:{running.http_port}/runwire.v1.FlowService/GetFlow",
                json={"flowId": flow.flow_id},
            )
            assert response.status_code == 200, response.text
        print(type(running.policy).__name__, running.tracer)
    print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))

asyncio.run(main())
"""


def test_with_tracing_off_no_span_is_made_and_opentelemetry_is_never_imported(
    tmp_path,
) -> None:
    done = run_python("OVERRIDES = {}\n" + CALLS, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{CallPolicy.__name__} None", "[]"]


def test_tracing_on_without_opentelemetry_is_refused_naming_the_extra(tmp_path) -> None:
    script = "import sys\nsys.modules['opentelemetry'] = None\n"
    script += "OVERRIDES = {'tracing': 'otlp'}\n" + CALLS
    done = run_python(script, tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "runwire_server.settings.ConfigurationError: RUNWIRE_TRACING=otlp needs OpenTelemetry, "
        "which is not installed: pip install 'runwire-server[otel]'"
    )
