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
import uuid
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
from tests.integrity import integrity_problems

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
                if method.server_streaming:
                    stream = call(request, timeout=1.0)
                    for count, _ in enumerate(stream):
                        if count >= 3:
                            stream.cancel()
                            break
                else:
                    call(request, timeout=10.0)
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
