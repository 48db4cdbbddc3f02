"""Hypothesis sends generated requests, valid and invalid, to every RPC of every service.

No answer may be INTERNAL or UNKNOWN, and afterwards the database is consistent: every run's
current state is the newest of its history. Requests are built from the message descriptors,
so an RPC or field added later is fuzzed without touching this file. String fields draw from
the ids of real objects half the time, so that requests also get past validation and change
real runs.

Each RPC gets 25 examples, or 500 with `pytest --long` (RUNWIRE_FUZZ_EXAMPLES overrides).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runwire.v1 import (
    concurrency_limit_service_pb2,
    concurrency_limit_service_pb2_grpc,
    deployment_pb2,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    task_run_pb2,
    task_run_service_pb2,
    task_run_service_pb2_grpc,
)
from runwire_server.server import SERVICES
from tests.conftest import start_server_process
from tests.integrity import integrity_problems
from tests.wire import CORRUPT, field_bytes, nested_struct, struct_paths, wrap

FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
METHODS = [method for service in SERVICES for method in service.methods]

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
NASTY_TEXT = ["", " ", "\x00", "a\x00b", "x" * 5000, "🙂" * 300, "%_\\", "'; DROP TABLE flows;--"]


class Requests:
    """Strategies for any message, drawing ids from objects that exist."""

    def __init__(self, known_ids: list[str]) -> None:
        self.ids = st.sampled_from(known_ids)
        self.text = st.one_of(
            self.ids,
            st.sampled_from(NASTY_TEXT),
            st.text(max_size=40),
            st.uuids().map(str),
        )

    def scalar(self, field: FieldDescriptor) -> st.SearchStrategy[Any]:
        kind = field.type
        if kind == FieldDescriptor.TYPE_STRING:
            return self.text
        if kind == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=300)
        if kind == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return st.floats(allow_nan=True, allow_infinity=True, width=32)
        if kind == FieldDescriptor.TYPE_ENUM:
            numbers = [v.number for v in field.enum_type.values]
            # Proto3 enums are open: a newer client may send a value we have never heard of.
            return st.one_of(st.sampled_from(numbers), st.integers(-5, 1000))
        low, high = INT_RANGES[kind]
        return st.one_of(
            st.integers(-3, 300).filter(lambda n: low <= n <= high),
            st.integers(low, high),
            st.sampled_from([low, high]),
        )

    def value(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if field.message_type is not None:
            return self.message(field.message_type, depth + 1)
        return self.scalar(field)

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        if descriptor.full_name == "google.protobuf.Struct":
            values = st.one_of(st.integers(-(2**60), 2**60), st.text(max_size=8), st.none())
            return st.dictionaries(st.text(max_size=8), values, max_size=3).map(_struct)
        if descriptor.full_name == "google.protobuf.Value":
            return st.just(struct_pb2.Value(string_value="x"))
        if depth > 5:
            return st.builds(GetMessageClass(descriptor))

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            out = GetMessageClass(descriptor)()
            fields = [f for f in descriptor.fields if draw(st.integers(0, 2)) > 0]
            for field in fields:
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    key_field, value_field = field.message_type.fields
                    entries = draw(
                        st.dictionaries(
                            self.scalar(key_field), self.value(value_field, depth), max_size=3
                        )
                    )
                    target = getattr(out, field.name)
                    for key, value in entries.items():
                        if value_field.message_type is not None:
                            target[key].CopyFrom(value)
                        else:
                            target[key] = value
                elif field.is_repeated:
                    items = draw(st.lists(self.value(field, depth), max_size=3))
                    target = getattr(out, field.name)
                    if field.message_type is not None:
                        for item in items:
                            target.add().CopyFrom(item)
                    else:
                        target.extend(items)
                elif field.message_type is not None:
                    getattr(out, field.name).CopyFrom(draw(self.value(field, depth)))
                else:
                    setattr(out, field.name, draw(self.scalar(field)))
            return out

        return build()


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


async def seed(channel: grpc.aio.Channel) -> list[str]:
    """Real objects for requests to name: a flow, a deployment, a run with a task run."""
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    flows = flow_service_pb2_grpc.FlowServiceStub(channel)
    deployments = deployment_service_pb2_grpc.DeploymentServiceStub(channel)
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
    task_runs = task_run_service_pb2_grpc.TaskRunServiceStub(channel)
    limits = concurrency_limit_service_pb2_grpc.ConcurrencyLimitServiceStub(channel)
    flow = (
        await flows.CreateFlow(flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=name)))
    ).flow
    deployment = (
        await deployments.CreateDeployment(
            deployment_service_pb2.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(flow_id=flow.id, name=name)
            )
        )
    ).deployment
    run = (
        await runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, deployment_id=deployment.id)
            )
        )
    ).flow_run
    task = (
        await task_runs.CreateTaskRun(
            task_run_service_pb2.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key="k", tags=[name])
            )
        )
    ).task_run
    await limits.CreateConcurrencyLimit(
        concurrency_limit_service_pb2.CreateConcurrencyLimitRequest(tag=name, concurrency_limit=1)
    )
    return [flow.id, deployment.id, run.id, task.id, name, "k"]


def call_once(call: Any, request: Any, streaming: bool, timeout: float) -> None:
    """One call; a stream is read for up to three messages (within a second), then cancelled."""
    if not streaming:
        call(request, timeout=timeout)
        return
    stream = call(request, timeout=1.0)
    for count, _ in enumerate(stream):
        if count >= 3:
            stream.cancel()
            return


def fuzz_method(port: int, method: MethodDescriptor, known_ids: list[str], examples: int) -> int:
    """Run the examples for one RPC over a synchronous channel; returns how many were sent."""
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    sent = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        if method.server_streaming:
            call = channel.unary_stream(
                path, request_class.SerializeToString, response_class.FromString
            )
        else:
            call = channel.unary_unary(
                path, request_class.SerializeToString, response_class.FromString
            )

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(Requests(known_ids).message(method.input_type))
        def one(request: Message) -> None:
            nonlocal sent
            sent += 1
            try:
                call_once(call, request, method.server_streaming, timeout=10.0)
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                assert code not in FORBIDDEN, f"{path} answered {code}: {exc} for {request!r}"

        one()
    return sent


@pytest.mark.timeout(1800)
async def test_every_rpc_survives_generated_requests(server_factory, database_overrides, sizes):
    async with (
        server_factory(**database_overrides) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        known_ids = await seed(channel)
        total = 0
        failures: list[str] = []
        for method in METHODS:
            # Every RPC gets its turn even when an earlier one fails; hypothesis has already
            # shrunk each failure to a small request.
            try:
                total += await asyncio.to_thread(
                    fuzz_method, running.port, method, known_ids, sizes.fuzz_examples
                )
            except AssertionError as exc:
                failures.append(str(exc).split("\nFailing test case")[0])
        print(f"fuzz: {total} requests over {len(METHODS)} RPCs")
        assert failures == []
        problems = await asyncio.to_thread(
            integrity_problems, running.app.db.url.render_as_string(hide_password=False)
        )
        assert problems == []


# --- hostile payloads: what no generator above builds -------------------------------------------

FORBIDDEN_WHILE_UP = FORBIDDEN | {grpc.StatusCode.UNAVAILABLE}
BIG = 4_000_000  # characters or bytes: a request just under the 4 MiB message limit
MANY = 100_000  # entries in one list or map
# As many as fit under 4 MiB: distinct map keys (upb's maps slow down as they grow), and empty
# messages in a list (two bytes each, the densest a request can be).
DENSE_KEYS = 350_000
DENSE_MESSAGES = 2_000_000


def dense_map(number: int, value: bytes = b"") -> bytes:
    """A map field of DENSE_KEYS distinct string keys, each with `value` (a field's bytes)."""
    return b"".join(
        field_bytes(number, field_bytes(1, f"{i:x}".encode()) + value) for i in range(DENSE_KEYS)
    )


def hostile_requests(descriptor: Descriptor) -> list[tuple[str, bytes]]:
    """(what, request bytes) for one request type: corrupt bytes, Structs nested 10,000 deep or
    holding as many keys as fit, a list or map of 100,000 entries (and as many as fit) and a
    4 MB string or bytes value in each field they fit, down to three levels of singular
    messages."""
    out = [(f"corrupt {i}", payload) for i, payload in enumerate(CORRUPT)]
    for path in struct_paths(descriptor):
        where = ".".join(f.name for f in path)
        out.append((f"{where} nested 10000", wrap(path, nested_struct(10_000))))
        out.append((f"{where} {DENSE_KEYS} keys", wrap(path, dense_map(1))))
        # The same key twice: the first value (a Struct of DENSE_KEYS keys) is decoded, then
        # replaced by the second, so what a decoded request holds understates its cost.
        first = field_bytes(1, b"a") + field_bytes(2, field_bytes(5, dense_map(1)))
        second = field_bytes(1, b"a") + field_bytes(2, b"\x08\x00")  # null
        replaced = field_bytes(1, first) + field_bytes(1, second)
        out.append((f"{where} {DENSE_KEYS} keys replaced", wrap(path, replaced)))
    for path in _field_paths(descriptor):
        field = path[-1]
        message = GetMessageClass(descriptor)()
        target = message
        for step in path[:-1]:
            target = getattr(target, step.name)
        where = ".".join(f.name for f in path)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entries = getattr(target, field.name)
            key_field, value_field = field.message_type.fields
            for i in range(MANY):
                key = f"k{i}" if key_field.type == FieldDescriptor.TYPE_STRING else i
                if value_field.message_type is not None:
                    entries[key].SetInParent()
                else:
                    entries[key] = _filler(value_field, 1)
            out.append((f"{where} x{MANY}", message.SerializeToString()))
            out.append((f"{where} {DENSE_KEYS} keys", wrap(path[:-1], dense_map(field.number))))
        elif field.is_repeated:
            values = getattr(target, field.name)
            if field.message_type is not None:
                for _ in range(MANY):
                    values.add()
                dense = field_bytes(field.number, b"") * DENSE_MESSAGES
                out.append((f"{where} x{DENSE_MESSAGES}", wrap(path[:-1], dense)))
            else:
                values.extend([_filler(field, 1)] * MANY)
            out.append((f"{where} x{MANY}", message.SerializeToString()))
        elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            setattr(target, field.name, _filler(field, BIG))
            out.append((f"{where} {BIG} long", message.SerializeToString()))
    return out


def _field_paths(descriptor: Descriptor, depth: int = 3) -> list[list[FieldDescriptor]]:
    paths: list[list[FieldDescriptor]] = []
    for field in descriptor.fields:
        kind = field.message_type
        if field.is_repeated or field.type in (
            FieldDescriptor.TYPE_STRING,
            FieldDescriptor.TYPE_BYTES,
        ):
            paths.append([field])
        elif kind is not None and depth > 0 and not kind.full_name.startswith("google."):
            paths += [[field, *rest] for rest in _field_paths(kind, depth - 1)]
    return paths


def _filler(field: FieldDescriptor, size: int) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return "x" * size
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"x" * size
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 1.0
    return 1  # integers, and enums (1 is defined for every enum of the contract)


class HealthProbe:
    """tests.health_probe in a process of its own, for as long as the `with` block lasts."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.latencies: list[float] = []
        self.failures = 0

    def __enter__(self) -> HealthProbe:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.health_probe", str(self._port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._process.communicate(timeout=60)
        result = json.loads(out.splitlines()[-1])
        self.latencies, self.failures = result["latencies"], result["failures"]

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        p50 = ordered[len(ordered) // 2] * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        return (
            f"{len(ordered)} checks, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {ordered[-1] * 1000:.1f} ms, {self.failures} failed"
        )


def send_raw(port: int, method: MethodDescriptor, payloads: list[tuple[str, bytes]]) -> list[str]:
    """Send each payload as it is; returns the answers that must not happen."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    problems = []
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 8 * 2**20)]
    ) as channel:
        kind = channel.unary_stream if method.server_streaming else channel.unary_unary
        call = kind(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for what, payload in payloads:
            try:
                call_once(call, payload, method.server_streaming, timeout=30.0)
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                if code in FORBIDDEN_WHILE_UP:
                    problems.append(f"{path} {what}: {code.name} {exc.details()}")  # type: ignore[attr-defined]
    return problems


@pytest.mark.timeout(1800)
def test_every_rpc_survives_hostile_payloads(tmp_path, database_overrides):
    """Against a server process (so that the clients here share no interpreter with it), with
    every payload built before the first is sent: the health checks' latencies are the
    server's."""
    payloads = {method: hostile_requests(method.input_type) for method in METHODS}
    url = database_overrides.get("database_url") or f"sqlite:///{tmp_path / 'hostile.db'}"
    server = start_server_process(url)
    server.drain_output()
    try:
        problems: list[str] = []
        with HealthProbe(server.port) as probe:
            for method in METHODS:
                problems += send_raw(server.port, method, payloads[method])
    finally:
        assert server.stop() == 0
    total = sum(len(p) for p in payloads.values())
    print(f"hostile payloads: {total} requests over {len(METHODS)} RPCs; health {probe.summary()}")
    assert problems == []
    assert probe.failures == 0
    assert integrity_problems(url) == []
