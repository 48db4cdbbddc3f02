"""Requests built to hurt: bytes that are no message, nesting past the decoder's limit, enum
numbers no version defines, oversized lists, values that would be echoed, filters that strain
the database, pages of large objects, and streams opened by the hundred. Each gets a clear
status naming what is wrong, and nothing else is disturbed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from typing import Any

import grpc
import psutil
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from runwire.v1 import (
    deployment_pb2,
    deployment_service_pb2,
    filters_pb2,
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_pb2,
    log_service_pb2,
    log_service_pb2_grpc,
    state_pb2,
    task_run_pb2,
    task_run_service_pb2,
    task_run_service_pb2_grpc,
    watch_pb2,
)
from runwire_server.api import request_decoder
from runwire_server.events import outbox
from tests.conftest import start_server_process
from tests.helpers import details_of, expect_error, make_flow, make_run, unique
from tests.wire import CORRUPT, field_bytes, nested_struct

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PARAMETERS = flow_run_pb2.FlowRun.DESCRIPTOR.fields_by_name["parameters"].number


def raw(channel: grpc.aio.Channel, method: str, stream: bool = False) -> Any:
    """A callable that sends bytes as they are to `method`."""
    kind = channel.unary_stream if stream else channel.unary_unary
    return kind(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)


async def first_message(call: Any) -> Any:
    async for message in call:
        return message
    return None


# --- bytes gRPC cannot decode ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "stream"),
    [
        ("/runwire.v1.FlowService/GetFlow", False),
        ("/runwire.v1.FlowRunService/CreateFlowRun", False),
        ("/runwire.v1.FlowRunService/WatchFlowRun", True),
        ("/grpc.health.v1.Health/Check", False),
        ("/grpc.health.v1.Health/Watch", True),
    ],
)
async def test_bytes_that_are_no_message_are_invalid_argument(channel, method, stream):
    for payload in CORRUPT:
        call = raw(channel, method, stream)(payload)
        details = await expect_error(first_message(call) if stream else call, INVALID)
        assert details.reason == "REQUEST_UNDECODABLE"
        assert "is not a valid" in details.message


async def test_structs_nested_past_the_decoders_limit_are_refused(channel, runs, flows):
    flow = await make_flow(flows)
    create = raw(channel, "/runwire.v1.FlowRunService/CreateFlowRun")
    number = flow_run_pb2.FlowRun.DESCRIPTOR.fields_by_name["flow_id"].number
    flow_id = field_bytes(number, flow.id.encode())
    for depth in (49, 99, 10_000):
        run = field_bytes(PARAMETERS, nested_struct(depth)) + flow_id
        details = await expect_error(create(field_bytes(1, run)), INVALID)
        assert details.reason == "REQUEST_UNDECODABLE"
        assert "nested more than 100 levels" in details.message
    # Within the limit, a nested document is kept and read back whole.
    run = field_bytes(PARAMETERS, nested_struct(25)) + flow_id
    answer = await create(field_bytes(1, run))
    created = flow_run_service_pb2.CreateFlowRunResponse.FromString(answer).flow_run
    got = await runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=created.id))
    depth, value = 0, got.flow_run.parameters
    while "k" in value.fields and value.fields["k"].HasField("struct_value"):
        depth, value = depth + 1, value.fields["k"].struct_value
    assert depth == 25


# --- enum numbers no version defines ----------------------------------------------------------


async def test_undefined_enum_values_are_refused_naming_the_field(flows, runs, task_runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    task = task_run_pb2.TaskRun(flow_run_id=run.id, task_key=unique("t"))
    task.task_inputs["x"].inputs.add(input_type=77)  # type: ignore[arg-type]
    details = await expect_error(
        task_runs.CreateTaskRun(task_run_service_pb2.CreateTaskRunRequest(task_run=task)),
        INVALID,
        "task_run.task_inputs['x'].inputs[0].input_type",
    )
    assert "77 is not a value of runwire.v1.TaskInput.InputType" in details.message
    listed = await task_runs.ListTaskRuns(
        task_run_service_pb2.ListTaskRunsRequest(
            filter=task_run_service_pb2.TaskRunCriteria(
                task_runs=filters_pb2.TaskRunFilter(
                    flow_run_id=filters_pb2.StringFilter(
                        any_of=filters_pb2.StringList(values=[run.id])
                    )
                )
            )
        )
    )
    assert list(listed.task_runs) == []  # nothing was stored
    operator = filters_pb2.FlowRunCriteria(flow_runs=filters_pb2.FlowRunFilter(operator=9))  # type: ignore[arg-type]
    await expect_error(
        runs.ListFlowRuns(flow_run_service_pb2.ListFlowRunsRequest(filter=operator)),
        INVALID,
        "filter.flow_runs.operator",
    )


# --- tags, labels and object sizes -----------------------------------------------------------


async def test_tags_and_labels_have_a_limit_per_object(flows, runs, deployments, task_runs):
    flow = await make_flow(flows)
    run = await make_run(runs, flow.id)
    many = [f"tag-{i}" for i in range(40_000)]
    requests = {
        "flow.tags": flows.CreateFlow(
            flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=unique("f"), tags=many))
        ),
        "flow_run.tags": runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, tags=many)
            )
        ),
        "deployment.tags": deployments.CreateDeployment(
            deployment_service_pb2.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(name=unique("d"), flow_id=flow.id, tags=many)
            )
        ),
        "task_run.tags": task_runs.CreateTaskRun(
            task_run_service_pb2.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key="k", tags=many)
            )
        ),
    }
    for field, call in requests.items():
        details = await expect_error(call, INVALID, field)
        assert "at most 100 are allowed" in details.message
    fifty = [f"tag-{i}" for i in range(50)]
    kept = await make_run(runs, flow.id, tags=[*fifty, *fifty])  # kept once each
    assert sorted(kept.tags) == sorted(fifty)
    labels = {f"k{i}": "v" for i in range(101)}
    await expect_error(
        flows.CreateFlow(
            flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=unique("f"), labels=labels))
        ),
        INVALID,
        "flow.labels",
    )
    details = await expect_error(
        runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, labels={"k": "v" * 1025})
            )
        ),
        INVALID,
        "flow_run.labels['k']",
    )
    assert "at most 1024 characters" in details.message


async def test_objects_larger_than_the_limit_are_refused_and_change_nothing(flows, runs):
    flow = await make_flow(flows)
    run = await make_run(runs, flow.id)
    huge = flow_run_pb2.FlowRun(flow_id=flow.id)
    huge.parameters.update({"blob": "x" * (1024 * 1024 + 1)})
    details = await expect_error(
        runs.CreateFlowRun(flow_run_service_pb2.CreateFlowRunRequest(flow_run=huge)),
        INVALID,
        "flow_run",
    )
    assert "RUNWIRE_MAX_OBJECT_BYTES" in details.message
    # Each update alone is small, but the run would grow past the limit: refused, unchanged.
    half = flow_run_pb2.FlowRun(id=run.id)
    half.parameters.update({"blob": "x" * 600_000})
    await runs.UpdateFlowRun(
        flow_run_service_pb2.UpdateFlowRunRequest(
            flow_run=half, update_mask=field_mask_pb2.FieldMask(paths=["parameters"])
        )
    )
    other = flow_run_pb2.FlowRun(id=run.id)
    other.context.update({"blob": "y" * 600_000})
    await expect_error(
        runs.UpdateFlowRun(
            flow_run_service_pb2.UpdateFlowRunRequest(
                flow_run=other, update_mask=field_mask_pb2.FieldMask(paths=["context"])
            )
        ),
        INVALID,
        "flow_run",
    )
    got = (
        await runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=run.id))
    ).flow_run
    assert "blob" not in got.context.fields and len(got.parameters["blob"]) == 600_000
    long_message = state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING, message="m" * 1_100_000)
    await expect_error(
        runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(flow_run_id=run.id, state=long_message)
        ),
        INVALID,
        "state",
    )


# --- values that would be echoed ----------------------------------------------------------------


async def test_client_values_are_quoted_short(runs, flows):
    for long_id, field in (("x" * 1_000_000, None), ("x" * 60_000, "flow_run_id")):
        details = await expect_error(
            runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=long_id)),
            INVALID,
            field,
        )
        assert len(details.message) < 200
    details = await expect_error(
        runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id="not-a-uuid-" * 3)),
        INVALID,
        "flow_run_id",
    )
    assert "'not-a-uuid-not-a-uuid-not-a-uuid-'" in details.message
    request = flow_run_service_pb2.UpdateFlowRunRequest(
        flow_run=flow_run_pb2.FlowRun(id=str(uuid.uuid4())),
        update_mask=field_mask_pb2.FieldMask(paths=["p" * 500_000]),
    )
    details = await expect_error(runs.UpdateFlowRun(request), INVALID, "update_mask")
    assert len(details.message) < 400
    flow = flow_pb2.Flow(name=unique("f"), labels={"k" * 500_000: "v"})
    details = await expect_error(
        flows.CreateFlow(flow_service_pb2.CreateFlowRequest(flow=flow)), INVALID
    )
    assert len(details.message) < 1100 and len(details.fields[0]) < 600


def test_the_log_never_carries_a_whole_client_value(tmp_path):
    server = start_server_process(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
            for value in ("x" * 1_000_000, "y" * 10_000):
                with pytest.raises(grpc.RpcError):
                    stub.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=value))
    finally:
        server.stop()
    errors = [line for line in server.lines if line.get("event") == "rpc.error"]
    assert len(errors) == 2
    assert max(len(json.dumps(line)) for line in server.lines) < 2000


# --- filters the database could not run -------------------------------------------------------


async def test_filters_at_their_documented_limits_work(flows, runs):
    tag = unique("tag")
    flow = await make_flow(flows, name=unique("Prefix-Match"), tags=[tag])
    run = await make_run(runs, flow.id, tags=[tag, "other"])
    thousand = [f"absent-{i}" for i in range(999)]
    all_of = filters_pb2.FlowRunCriteria(
        flow_runs=filters_pb2.FlowRunFilter(
            tags=filters_pb2.TagsFilter(all_of=filters_pb2.StringList(values=[tag, *thousand]))
        )
    )
    counted = await runs.CountFlowRuns(flow_run_service_pb2.CountFlowRunsRequest(filter=all_of))
    assert counted.count == 0
    both = filters_pb2.FlowRunCriteria(
        flow_runs=filters_pb2.FlowRunFilter(
            tags=filters_pb2.TagsFilter(
                all_of=filters_pb2.StringList(values=[tag, "other", tag])  # repeats count once
            )
        )
    )
    listed = await runs.ListFlowRuns(flow_run_service_pb2.ListFlowRunsRequest(filter=both))
    assert [r.id for r in listed.flow_runs] == [run.id]

    # Letters outside ASCII are folded by the database alike on both sides.
    umlaut = await make_flow(flows, name=unique("Ärger"))
    found = await flows.ListFlows(
        flow_service_pb2.ListFlowsRequest(
            flows=filters_pb2.FlowFilter(
                name=filters_pb2.StringFilter(starts_with=filters_pb2.StringList(values=["Är"]))
            )
        )
    )
    assert umlaut.id in [f.id for f in found.flows]
    # A thousand prefixes of as many lengths, matched without regard to case.
    prefixes = [flow.name[:n].upper() for n in range(1, len(flow.name))]
    prefixes += [f"{i:0{(i % 200) + 1}d}" for i in range(1000 - len(prefixes))]
    names = filters_pb2.FlowFilter(
        name=filters_pb2.StringFilter(starts_with=filters_pb2.StringList(values=prefixes))
    )
    found = await flows.ListFlows(flow_service_pb2.ListFlowsRequest(flows=names))
    assert flow.id in [f.id for f in found.flows]
    like = "e" * 255
    await flows.ListFlows(
        flow_service_pb2.ListFlowsRequest(
            flows=filters_pb2.FlowFilter(name=filters_pb2.StringFilter(like=like))
        )
    )
    for too_long in ("e" * 256, "%" * 1_000_000):
        details = await expect_error(
            flows.ListFlows(
                flow_service_pb2.ListFlowsRequest(
                    flows=filters_pb2.FlowFilter(name=filters_pb2.StringFilter(like=too_long))
                )
            ),
            INVALID,
            "flows.name.like",
        )
        assert "at most 255" in details.message

    def values(n: int) -> filters_pb2.StringList:
        return filters_pb2.StringList(values=[f"v{i}" for i in range(n)])

    crowded = filters_pb2.FlowRunFilter(
        name=filters_pb2.StringFilter(any_of=values(1000), not_any_of=values(1000)),
        flow_version=filters_pb2.StringFilter(any_of=values(1000), not_any_of=values(1000)),
        work_queue_name=filters_pb2.StringFilter(any_of=values(1000), not_any_of=values(1000)),
        work_pool_name=filters_pb2.StringFilter(any_of=values(1000), not_any_of=values(1000)),
        idempotency_key=filters_pb2.StringFilter(any_of=values(1000), not_any_of=values(1000)),
        created_by_id=filters_pb2.StringFilter(any_of=values(1000)),
    )
    details = await expect_error(
        runs.CountFlowRuns(
            flow_run_service_pb2.CountFlowRunsRequest(
                filter=filters_pb2.FlowRunCriteria(flow_runs=crowded)
            )
        ),
        INVALID,
        "filter",
    )
    assert "11000 entries in all; at most 10000" in details.message
    del crowded.created_by_id.any_of.values[:]
    counted = await runs.CountFlowRuns(
        flow_run_service_pb2.CountFlowRunsRequest(
            filter=filters_pb2.FlowRunCriteria(flow_runs=crowded)
        )
    )
    assert counted.count == 0


# --- pages of large objects ---------------------------------------------------------------------


async def test_a_page_ends_early_rather_than_pass_the_largest_response(
    server_factory, database_overrides
):
    limits = {
        "max_message_bytes": 256 * 1024,
        "max_object_bytes": 64 * 1024,
        "max_inline_result_bytes": 1024,
        "max_log_message_bytes": 60 * 1024,
    }
    async with (
        server_factory(**database_overrides, **limits) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        logs = log_service_pb2_grpc.LogServiceStub(channel)
        flow = await make_flow(flows)
        created = []
        for i in range(24):
            run = flow_run_pb2.FlowRun(flow_id=flow.id)
            run.parameters.update({"blob": str(i % 10) * 60_000})
            response = await runs.CreateFlowRun(
                flow_run_service_pb2.CreateFlowRunRequest(flow_run=run)
            )
            created.append(response.flow_run.id)
        for _ in range(10):
            line = log_pb2.Log(flow_run_id=created[0], name="n", level=20, message="m" * 60_000)
            await logs.CreateLogs(log_service_pb2.CreateLogsRequest(logs=[line]))
        for i in range(12):
            state = state_pb2.State(type=state_pb2.STATE_TYPE_PENDING, name=f"P{i}")
            state.message = "s" * 60_000
            await runs.SetFlowRunState(
                flow_run_service_pb2.SetFlowRunStateRequest(
                    flow_run_id=created[1], state=state, force=True
                )
            )

        async def every_page(call: Any, request: Any, items: str) -> list[Any]:
            seen: list[Any] = []
            while True:
                page = await call(request)
                assert page.ByteSize() <= 256 * 1024
                assert getattr(page, items), "every page carries at least one item"
                seen += list(getattr(page, items))
                if not page.next_page_token:
                    return seen
                request.page_token = page.next_page_token

        criteria = filters_pb2.FlowRunCriteria(
            flows=filters_pb2.FlowFilter(
                id=filters_pb2.StringFilter(any_of=filters_pb2.StringList(values=[flow.id]))
            )
        )
        listed = await every_page(
            runs.ListFlowRuns,
            flow_run_service_pb2.ListFlowRunsRequest(filter=criteria, page_size=200),
            "flow_runs",
        )
        assert sorted(r.id for r in listed) == sorted(created)
        first = await runs.ListFlowRuns(
            flow_run_service_pb2.ListFlowRunsRequest(filter=criteria, page_size=200)
        )
        assert 1 <= len(first.flow_runs) < 24 and first.next_page_token

        run_logs = filters_pb2.LogFilter(
            flow_run_id=filters_pb2.StringFilter(any_of=filters_pb2.StringList(values=[created[0]]))
        )
        listed_logs = await every_page(
            logs.ListLogs, log_service_pb2.ListLogsRequest(filter=run_logs), "logs"
        )
        assert len(listed_logs) == 10
        states = await every_page(
            runs.ListFlowRunStates,
            flow_run_service_pb2.ListFlowRunStatesRequest(flow_run_id=created[1]),
            "states",
        )
        assert len(states) == 13  # the initial Pending and twelve more


# --- streams that need no token -----------------------------------------------------------------


async def test_streams_that_need_no_token_are_capped_per_peer(server_factory):
    async with (
        server_factory(max_open_streams_per_peer=3) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def watching() -> Any:
            stream = health.Watch(health_pb2.HealthCheckRequest(service=""))
            await stream.read()
            return stream

        streams = [await watching(), await watching()]
        reflecting = reflect.ServerReflectionInfo()
        await reflecting.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        await reflecting.read()
        over = health.Watch(health_pb2.HealthCheckRequest(service=""))
        details = await expect_error(over.read(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert details.reason == "STREAMS_EXHAUSTED"
        assert "RUNWIRE_MAX_OPEN_STREAMS_PER_PEER" in details.message
        # Checks are not streams: they keep working.
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        # Runwire's own watch streams count against their own limit.
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        watch = runs.WatchFlowRuns(watch_pb2.WatchFlowRunsRequest())
        await watch.read()
        watch.cancel()
        streams[0].cancel()
        for _ in range(50):
            try:
                streams[0] = await watching()
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("a closed stream never gave its place back")
        for stream in streams:
            stream.cancel()
        reflecting.cancel()


async def test_a_replay_of_large_events_reads_them_a_budget_at_a_time(server, flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    message = "s" * 900_000
    for i in range(12):  # about 11 MB of state events: more than one replay budget
        state = state_pb2.State(type=state_pb2.STATE_TYPE_PENDING, name=f"P{i}", message=message)
        await runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(flow_run_id=run.id, state=state, force=True)
        )
    await runs.SetFlowRunState(
        flow_run_service_pb2.SetFlowRunStateRequest(
            flow_run_id=run.id, state=state_pb2.State(type=state_pb2.STATE_TYPE_COMPLETED)
        )
    )

    def first_chunk(session: Any) -> Any:
        return outbox.events_after(session, uuid.UUID(run.id), 0, 500)

    chunk = await server.app.db.read(first_chunk)
    assert 1 <= len(chunk.events) < 14 and chunk.more
    assert sum(len(e.payload) for e in chunk.events[:-1]) < outbox.REPLAY_BYTES
    stream = runs.WatchFlowRun(watch_pb2.WatchFlowRunRequest(flow_run_id=run.id, after_cursor=0))
    names = [m.flow_run_state.state.name async for m in stream if m.HasField("flow_run_state")]
    assert names == ["Pending", *[f"P{i}" for i in range(12)], "Completed"]
    everything = runs.WatchFlowRuns(watch_pb2.WatchFlowRunsRequest(after_cursor=0))
    seen = []
    async for m in everything:
        if m.WhichOneof("event") == "caught_up":
            break
        if m.flow_run_state.flow_run_id == run.id:
            seen.append(m.flow_run_state.state.name)
    everything.cancel()
    assert seen == names


async def test_an_answer_that_cannot_be_paged_is_refused_plainly(server_factory):
    limits = {"max_message_bytes": 256 * 1024, "max_object_bytes": 64 * 1024}
    async with (
        server_factory(**limits, max_inline_result_bytes=60_000) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        task_runs = task_run_service_pb2_grpc.TaskRunServiceStub(channel)
        run = await make_run(
            runs, (await make_flow(flow_service_pb2_grpc.FlowServiceStub(channel))).id
        )
        await runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(
                flow_run_id=run.id, state=state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING)
            )
        )

        async def task(map_index: int) -> str:
            created = await task_runs.CreateTaskRun(
                task_run_service_pb2.CreateTaskRunRequest(
                    task_run=task_run_pb2.TaskRun(
                        flow_run_id=run.id,
                        task_key="square",
                        dynamic_key=str(map_index),
                        map_index=map_index,
                    )
                )
            )
            return str(created.task_run.id)

        parent = await task(-1)
        for index in range(6):
            child = await task(index)
            done = state_pb2.State(
                type=state_pb2.STATE_TYPE_COMPLETED,
                result=state_pb2.ResultReference(serializer="json", inline_value=b"x" * 59_000),
            )
            await task_runs.SetTaskRunState(
                task_run_service_pb2.SetTaskRunStateRequest(
                    task_run_id=child, state=done, force=True
                )
            )
        details = await expect_error(
            task_runs.GetTaskRunResult(
                task_run_service_pb2.GetTaskRunResultRequest(task_run_id=parent)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert details.reason == "RESPONSE_TOO_LARGE"
        answer = await task_runs.GetTaskRunResult(
            task_run_service_pb2.GetTaskRunResultRequest(task_run_id=child)
        )
        assert len(answer.result.inline_value) == 59_000


async def test_a_large_request_of_a_small_kind_is_refused_unread(runs):
    # A GetFlowRunRequest holds one id: megabytes of it are refused before they are decoded.
    details = await expect_error(
        runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id="x" * 100_000)),
        INVALID,
    )
    assert details.reason == "REQUEST_UNDECODABLE"
    assert "a runwire.v1.GetFlowRunRequest is at most 65536" in details.message
    details = await expect_error(
        runs.ListFlowRuns(flow_run_service_pb2.ListFlowRunsRequest(page_token="t" * 5000)),
        INVALID,
        "page_token",
    )


# --- requests that would take long to decode ---------------------------------------------------


def many_labels(count: int) -> dict[str, str]:
    return {f"{i:x}": "" for i in range(count)}


def dense_struct_value(keys: int = 340_000) -> bytes:
    """A google.protobuf.Value holding a Struct of `keys` keys, each with an empty value."""
    entries = b"".join(field_bytes(1, field_bytes(1, f"{i:x}".encode())) for i in range(keys))
    return field_bytes(5, entries)  # struct_value


@pytest.mark.parametrize("workers", [1, 0])
async def test_requests_with_more_entries_than_the_server_decodes_are_refused(
    server_factory, workers
):
    """A map's entries cost upb more the more there are: 350,000 labels (under 4 MiB) held the
    event loop for half a second. Requests with more than 50,000 entries in all are refused,
    checked in a worker process (or, with no workers, on the event loop)."""
    async with (
        server_factory(decode_workers=workers) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        flow = await make_flow(flows)
        name = unique("crowded")
        details = await expect_error(
            flows.CreateFlow(
                flow_service_pb2.CreateFlowRequest(
                    flow=flow_pb2.Flow(name=name, labels=many_labels(350_000))
                )
            ),
            INVALID,
            "flow.labels",
        )
        assert "more than 50000 map entries in all" in details.message
        await expect_error(
            flows.GetFlowByName(flow_service_pb2.GetFlowByNameRequest(name=name)),
            grpc.StatusCode.NOT_FOUND,
        )
        # Entries are counted at every depth: 60,000 keys in 600 documents of a run's parameters.
        nested = flow_run_pb2.FlowRun(flow_id=flow.id)
        nested.parameters.update({f"d{j}": {f"k{i}": i for i in range(100)} for j in range(600)})
        details = await expect_error(
            runs.CreateFlowRun(flow_run_service_pb2.CreateFlowRunRequest(flow_run=nested)),
            INVALID,
        )
        assert details.fields[0].startswith("flow_run.parameters.fields['d")
        # 2,000,000 empty logs: 4 MB of list elements, the densest a request can be.
        number = log_service_pb2.CreateLogsRequest.DESCRIPTOR.fields_by_name["logs"].number
        empty_logs = field_bytes(number, b"") * 2_000_000
        details = await expect_error(
            raw(channel, "/runwire.v1.LogService/CreateLogs")(empty_logs), INVALID, "logs"
        )
        assert "more than 250000 list elements in all" in details.message
        # List elements are cheap to decode: a list of 60,000 numbers is kept.
        numbers = flow_run_pb2.FlowRun(flow_id=flow.id)
        numbers.parameters.update({"data": list(range(60_000))})
        created = (
            await runs.CreateFlowRun(flow_run_service_pb2.CreateFlowRunRequest(flow_run=numbers))
        ).flow_run
        assert len(created.parameters["data"]) == 60_000
        # A key sent twice is decoded twice and kept once: what the server decodes is what the
        # worker counted (the first value of 340,000 keys is gone), not what was sent.
        replaced = field_bytes(1, field_bytes(1, b"a") + field_bytes(2, dense_struct_value()))
        replaced += field_bytes(1, field_bytes(1, b"a") + field_bytes(2, b"\x08\x00"))
        flow_id = flow_run_pb2.FlowRun.DESCRIPTOR.fields_by_name["flow_id"].number
        run = field_bytes(PARAMETERS, replaced) + field_bytes(flow_id, flow.id.encode())
        answer = await raw(channel, "/runwire.v1.FlowRunService/CreateFlowRun")(field_bytes(1, run))
        created = flow_run_service_pb2.CreateFlowRunResponse.FromString(answer).flow_run
        assert dict(created.parameters) == {"a": None}
        # Within the limit, a large document is decoded, kept and read back whole.
        within = flow_run_pb2.FlowRun(flow_id=flow.id)
        within.parameters.update({f"d{j}": {f"k{i}": i for i in range(100)} for j in range(400)})
        created = (
            await runs.CreateFlowRun(flow_run_service_pb2.CreateFlowRunRequest(flow_run=within))
        ).flow_run
        got = (
            await runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=created.id))
        ).flow_run
        assert got.parameters == within.parameters


async def test_a_lost_decoding_worker_is_replaced(server_factory):
    """The worker that checks large requests is a process the server starts; killed (by an
    operator, by the kernel short of memory), it is started again and no request fails."""
    async with (
        server_factory() as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        flow = await make_flow(flows)
        large = flow_run_pb2.FlowRun(flow_id=flow.id)
        large.parameters.update({"blob": "x" * 200_000})
        request = flow_run_service_pb2.CreateFlowRunRequest(flow_run=large)
        await runs.CreateFlowRun(request)
        workers = server.decoder.processes()
        assert workers, "a large request is checked in a worker process"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        created = (await runs.CreateFlowRun(request)).flow_run
        assert created.parameters["blob"] == "x" * 200_000
        replaced = server.decoder.processes()
        assert replaced and not set(replaced) & set(workers)
        processes = [psutil.Process(pid) for pid in replaced]
    # The server's workers end with the server.
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == []


def labels_request(count: int = 350_000) -> flow_service_pb2.CreateFlowRequest:
    return flow_service_pb2.CreateFlowRequest(
        flow=flow_pb2.Flow(name=unique("crowded"), labels=many_labels(count))
    )


async def test_large_requests_cancelled_while_checked_leave_others_their_answers(
    server_factory,
):
    """A call abandoned while its request is being checked leaves the exchange to finish; the
    next large request gets its own answer."""
    async with (
        server_factory() as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        flow = await make_flow(flows)
        hostile = labels_request()
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await flows.CreateFlow(hostile, timeout=0.05)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        large = flow_run_pb2.FlowRun(flow_id=flow.id, name=unique("large"))
        large.parameters.update({"blob": "y" * 100_000})
        created = (
            await runs.CreateFlowRun(flow_run_service_pb2.CreateFlowRunRequest(flow_run=large))
        ).flow_run
        assert created.name == large.name and created.parameters["blob"] == "y" * 100_000


async def test_a_client_may_have_only_so_many_large_requests_waiting(server_factory, monkeypatch):
    """Large requests wait for a worker holding their bytes: one client may have 16 waiting,
    and is refused more (retryable: RESOURCE_EXHAUSTED) rather than fill the server's memory.
    The worker here never answers, so that all of them wait."""
    monkeypatch.setattr(
        request_decoder, "worker_command", lambda: [sys.executable, "-c", STUCK_WORKER]
    )
    async with (
        server_factory() as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        create = raw(channel, "/runwire.v1.FlowService/CreateFlow")
        request = labels_request(10_000).SerializeToString()
        outcomes = await asyncio.gather(
            *(create(request, timeout=3) for _ in range(20)), return_exceptions=True
        )
        codes = [o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) == 16, codes
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 4, codes
        busy = next(o for o in outcomes if o.code() == grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert details_of(busy).reason == "DECODER_BUSY"


async def test_a_decoding_worker_that_cannot_start_makes_large_requests_unavailable(
    server_factory, monkeypatch
):
    """A server fault, not the client's: UNAVAILABLE, which clients retry."""
    monkeypatch.setattr(
        request_decoder, "worker_command", lambda: [sys.executable, "-c", "raise SystemExit(3)"]
    )
    async with (
        server_factory() as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        for _ in range(2):  # the second is answered at once, without starting another
            details = await expect_error(
                flows.CreateFlow(labels_request()), grpc.StatusCode.UNAVAILABLE
            )
            assert details.reason == "DECODER_UNAVAILABLE"
        # Small requests are not checked by the worker, and are served.
        await make_flow(flows)


STUCK_WORKER = """
import json, struct, sys, time
import runwire_server
hello = json.dumps({"module": runwire_server.__file__}).encode()
sys.stdout.buffer.write(struct.pack(">I", len(hello)) + hello)
sys.stdout.buffer.flush()
time.sleep(3600)
"""


async def test_a_stuck_decoding_worker_is_replaced(server_factory, monkeypatch):
    monkeypatch.setattr(request_decoder, "ANSWER_SECONDS", 1.0)
    monkeypatch.setattr(
        request_decoder, "worker_command", lambda: [sys.executable, "-c", STUCK_WORKER]
    )
    async with (
        server_factory() as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        details = await expect_error(flows.CreateFlow(labels_request(60_000)), INVALID)
        assert details.reason == "REQUEST_UNDECODABLE"
        assert "more than 1 s, twice" in details.message
        processes = [psutil.Process(pid) for pid in server.decoder.processes()]
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == []


async def test_task_run_criteria_have_the_limits_of_every_filter(task_runs):
    many = filters_pb2.StringList(values=[str(uuid.uuid4()) for _ in range(1001)])
    await expect_error(
        task_runs.ListTaskRuns(
            task_run_service_pb2.ListTaskRunsRequest(
                filter=task_run_service_pb2.TaskRunCriteria(
                    flow_runs=filters_pb2.FlowRunFilter(id=filters_pb2.StringFilter(any_of=many))
                )
            )
        ),
        INVALID,
        "filter.flow_runs.id.any_of.values",
    )
    details = await expect_error(
        task_runs.CountTaskRuns(
            task_run_service_pb2.CountTaskRunsRequest(
                filter=task_run_service_pb2.TaskRunCriteria(
                    flows=filters_pb2.FlowFilter(name=filters_pb2.StringFilter(like="x" * 256))
                )
            )
        ),
        INVALID,
        "filter.flows.name.like",
    )
    assert "at most 255" in details.message
