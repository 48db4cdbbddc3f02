"""Every limit refuses an over-limit request with a clear status, and changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from runwire.v1 import (
    filters_pb2,
    flow_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_pb2,
    log_service_pb2,
    log_service_pb2_grpc,
    state_pb2,
    watch_pb2,
)
from tests.helpers import expect_error, make_flow, make_run, unique

TOKENS = "write:rwt_limits_a,write:rwt_limits_b"


@pytest.fixture
async def small(server_factory: Any) -> Any:
    limits = {
        "max_message_bytes": 64 * 1024,
        "max_page_size": 50,
        "default_page_size": 10,
        "max_logs_per_request": 5,
        "max_inline_result_bytes": 100,
        "max_object_bytes": 16 * 1024,
        "max_filter_values": 20,
        "max_watch_streams_per_client": 2,
    }
    async with (
        server_factory(**limits) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield channel


async def test_a_message_over_the_size_limit_is_refused_by_grpc(small):
    flows = flow_service_pb2_grpc.FlowServiceStub(small)
    name = unique("big")
    big = flow_pb2.Flow(name=name, labels={"blob": "x" * 70_000})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.CreateFlow(flow_service_pb2.CreateFlowRequest(flow=big))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (caught.value.details() or "")
    await expect_error(
        flows.GetFlowByName(flow_service_pb2.GetFlowByNameRequest(name=name)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_page_size_over_the_limit(small):
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(small)
    details = await expect_error(
        runs.ListFlowRuns(flow_run_service_pb2.ListFlowRunsRequest(page_size=51)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )
    assert "at most 50" in details.message
    await runs.ListFlowRuns(flow_run_service_pb2.ListFlowRunsRequest(page_size=50))


async def test_log_batch_over_the_limit_writes_nothing(small):
    flows = flow_service_pb2_grpc.FlowServiceStub(small)
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(small)
    logs = log_service_pb2_grpc.LogServiceStub(small)
    run = await make_run(runs, (await make_flow(flows)).id)
    batch = [log_pb2.Log(flow_run_id=run.id, name="n", level=20, message=str(i)) for i in range(6)]
    details = await expect_error(
        logs.CreateLogs(log_service_pb2.CreateLogsRequest(logs=batch)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "logs",
    )
    assert "at most 5" in details.message
    flt = filters_pb2.LogFilter(
        flow_run_id=filters_pb2.StringFilter(any_of=filters_pb2.StringList(values=[run.id]))
    )
    listed = await logs.ListLogs(log_service_pb2.ListLogsRequest(filter=flt))
    assert list(listed.logs) == []


async def test_inline_result_over_the_limit(small):
    flows = flow_service_pb2_grpc.FlowServiceStub(small)
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(small)
    run = await make_run(runs, (await make_flow(flows)).id)
    completed = state_pb2.State(
        type=state_pb2.STATE_TYPE_COMPLETED,
        result=state_pb2.ResultReference(serializer="json", inline_value=b"x" * 101),
    )
    details = await expect_error(
        runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(flow_run_id=run.id, state=completed)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "state.result.inline_value",
    )
    assert "at most 100" in details.message
    got = await runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=run.id))
    assert got.flow_run.state.type != state_pb2.STATE_TYPE_COMPLETED


async def test_filter_lists_over_the_limit(small):
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(small)
    ids = filters_pb2.StringList(values=[str(uuid.uuid4()) for _ in range(21)])
    criteria = filters_pb2.FlowRunCriteria(
        flow_runs=filters_pb2.FlowRunFilter(id=filters_pb2.StringFilter(any_of=ids))
    )
    field = "filter.flow_runs.id.any_of.values"
    for call in (
        runs.ListFlowRuns(flow_run_service_pb2.ListFlowRunsRequest(filter=criteria)),
        runs.CountFlowRuns(flow_run_service_pb2.CountFlowRunsRequest(filter=criteria)),
    ):
        details = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, field)
        assert "has 21 entries; at most 20" in details.message
    del criteria.flow_runs.id.any_of.values[-1]
    await runs.CountFlowRuns(flow_run_service_pb2.CountFlowRunsRequest(filter=criteria))


async def test_watch_streams_per_client(small):
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(small)

    async def opened() -> Any:
        stream = runs.WatchFlowRuns(watch_pb2.WatchFlowRunsRequest())
        await stream.read()
        return stream

    first, second = await opened(), await opened()
    third = runs.WatchFlowRuns(watch_pb2.WatchFlowRunsRequest())
    details = await expect_error(third.read(), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert details.reason == "WATCH_STREAMS_EXHAUSTED"
    assert details.metadata["limit"] == "2"
    # A closed stream gives its slot back.
    first.cancel()
    for _ in range(50):
        try:
            fourth = await opened()
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("the cancelled stream's slot was never released")
    fourth.cancel()
    second.cancel()


async def test_watch_streams_are_counted_per_token(server_factory):
    async with (
        server_factory(tokens=TOKENS, max_watch_streams_per_client=1) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        streams = []
        for token in ("rwt_limits_a", "rwt_limits_b"):
            stream = runs.WatchFlowRuns(
                watch_pb2.WatchFlowRunsRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
            await stream.read()
            streams.append(stream)
        again = runs.WatchFlowRuns(
            watch_pb2.WatchFlowRunsRequest(), metadata=(("authorization", "Bearer rwt_limits_a"),)
        )
        details = await expect_error(again.read(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert "token 'env-1'" in details.message
        for stream in streams:
            stream.cancel()
