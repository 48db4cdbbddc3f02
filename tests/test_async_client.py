"""AsyncClient against a real server: the calls of every resource group, task runs and
watching included, over its own grpc.aio channel."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pendulum
import pytest
import pytest_asyncio

import runwire
from runwire import AsyncClient, Client, FlowRunView, Result, StateType, proposed_state
from runwire.filters import flow_runs


@pytest_asyncio.fixture
async def client(server) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=10) as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


async def test_flows_deployments_and_limits(client: AsyncClient) -> None:
    flow = await client.create_flow(unique("aflow"), tags=["a"])
    assert (await client.get_flow(flow.flow_id)).name == flow.name
    assert (await client.get_flow_by_name(flow.name)).flow_id == flow.flow_id
    assert flow.flow_id in [f.flow_id async for f in client.list_flows()]
    assert isinstance(flow.created, pendulum.DateTime)

    dep = await client.create_deployment(flow.flow_id, "nightly", concurrency_limit=2)
    assert (await client.get_deployment(dep.deployment_id)).concurrency_limit == 2
    assert dep.deployment_id in [d.deployment_id async for d in client.list_deployments()]
    await client.delete_deployment(dep.deployment_id)

    tag = unique("tag")
    assert (await client.set_concurrency_limit(tag, 3)).limit == 3
    assert (await client.get_concurrency_limit(tag)).active_task_run_ids == ()
    assert tag in [limit.tag async for limit in client.list_concurrency_limits()]
    await client.delete_concurrency_limit(tag)
    with pytest.raises(runwire.NotFound):
        await client.get_concurrency_limit(tag)

    await client.delete_flow(flow.flow_id)
    with pytest.raises(runwire.NotFound):
        await client.get_flow(flow.flow_id)


async def test_flow_runs(client: AsyncClient) -> None:
    flow = await client.create_flow(unique("aruns"))
    run = await client.create_flow_run(flow.flow_id, parameters={"n": 1}, tags=["x"])
    assert run.parameters == {"n": 1}
    moved = await client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.RUNNING))
    assert moved.written and moved.status == "ACCEPT"
    view = await client.get_flow_run(run.flow_run_id)
    assert [s.name for s in view.states] == ["Pending", "Running"]
    assert isinstance(view.updated_at, pendulum.DateTime)
    states = await client.list_flow_run_states(run.flow_run_id)
    assert [s.type for s in states] == [StateType.PENDING, StateType.RUNNING]
    criteria = flow_runs(ids=[run.flow_run_id])
    assert await client.count_flow_runs(criteria) == 1
    assert [r.flow_run_id async for r in client.list_flow_runs(criteria, limit=5)] == [
        run.flow_run_id
    ]
    renamed = await client.update_flow_run(run.flow_run_id, name="renamed")
    assert renamed.name == "renamed"
    now = datetime.now(UTC)
    history = await client.get_flow_run_history(
        now - timedelta(hours=1), now + timedelta(hours=1), timedelta(hours=1), criteria
    )
    assert sum(sum(i.counts.values()) for i in history) == 1
    assert await client.get_flow_run_graph(run.flow_run_id) == []
    cancelled = await client.cancel_flow_run(run.flow_run_id)
    assert cancelled.state is not None and cancelled.state.type is StateType.CANCELLING
    paused = await client.resume_flow_run(run.flow_run_id)
    assert paused.status == "ABORT"
    await client.delete_flow_run(run.flow_run_id)
    with pytest.raises(runwire.NotFound):
        await client.get_flow_run(run.flow_run_id)


async def test_task_runs_and_their_results(client: AsyncClient) -> None:
    flow = await client.create_flow(unique("atasks"))
    run = await client.create_flow_run(flow.flow_id)
    await client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.RUNNING))
    a = await client.create_task_run(run.flow_run_id, "a")
    b = await client.create_task_run(run.flow_run_id, "b", upstream={"x": [a.task_run_id]})
    assert (await client.create_task_run(run.flow_run_id, "a")).task_run_id == a.task_run_id
    for state in (
        proposed_state(StateType.RUNNING),
        proposed_state(StateType.COMPLETED, result=Result("json", inline_value=b"[1, 2]")),
    ):
        assert (await client.set_task_run_state(a.task_run_id, state)).written
    assert (await client.get_task_run(a.task_run_id)).state.is_completed()
    by_slug = await client.get_task_run_by_slug("b", run.flow_run_id)
    assert by_slug.task_run_id == b.task_run_id
    assert await client.get_task_run_result(a.task_run_id) == [1, 2]
    messages = await client.task_run_messages(run.flow_run_id)
    assert [m.id for m in messages] == [a.task_run_id, b.task_run_id]
    graph = {n.task_run_id: n.upstream for n in await client.get_flow_run_graph(run.flow_run_id)}
    assert graph == {a.task_run_id: (), b.task_run_id: (a.task_run_id,)}


async def test_logs_and_watching(client: AsyncClient) -> None:
    flow = await client.create_flow(unique("awatch"))
    run = await client.create_flow_run(flow.flow_id)
    changes = client.watch_flow_runs(flow_runs(flow_ids=[flow.flow_id]), after_cursor=0)
    cursor, run_id, state = await anext(changes)
    assert (run_id, state.name) == (run.flow_run_id, "Pending") and cursor > 0
    await changes.aclose()  # type: ignore[attr-defined]

    lines: list[str] = []

    async def follow() -> None:
        async for line in client.watch_flow_run(run.flow_run_id):
            lines.append(line.message)

    watcher = asyncio.create_task(follow())
    await client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.RUNNING))
    await client.write_logs(run.flow_run_id, (logging.INFO, "one"), (logging.WARNING, "two"))
    await client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.COMPLETED))
    await asyncio.wait_for(watcher, timeout=30)
    assert lines[-3:] == ["one", "two", "Entered state <Completed>: "]

    kinds = [m.WhichOneof("event") async for m in client.watch(run.flow_run_id, after_cursor=0)]
    assert kinds.count("log") == 2 and kinds.count("flow_run_state") == 3
    logs = [entry async for entry in client.list_logs(run.flow_run_id)]
    assert [entry.message for entry in logs] == ["one", "two"]
    assert logs[1].level_name == "WARNING" and isinstance(logs[0].timestamp, pendulum.DateTime)
    finished = [line async for line in client.watch_flow_run(run.flow_run_id)]
    assert len(finished) == 1 and finished[0].message.startswith("Your flow run finished")


async def test_views_of_an_async_client_fetch_with_a_blocking_client_of_its_settings(
    client: AsyncClient, server
) -> None:
    flow = await client.create_flow(unique("aviews"))
    view = await client.get_flow_run((await client.create_flow_run(flow.flow_id)).flow_run_id)
    # A view's methods are blocking calls: off the event loop, which also serves this server.
    metadata = await asyncio.to_thread(view.get_flow_metadata)
    assert metadata.name == flow.name
    assert await asyncio.to_thread(lambda: list(view.get_logs())) == []


async def test_views_never_open_a_client_of_their_own(server) -> None:
    def body() -> None:
        with pytest.raises(runwire.NoClient):
            FlowRunView.from_flow_run_id("00000000-0000-0000-0000-000000000000")
        with Client(f"127.0.0.1:{server.port}", timeout=10) as client:
            run = client.create_flow_run(client.create_flow(unique("ctx")).flow_id)
            assert FlowRunView.from_flow_run_id(run.flow_run_id).flow_run_id == run.flow_run_id
        with pytest.raises(runwire.NoClient):
            FlowRunView.from_flow_run_id(run.flow_run_id)

    await asyncio.to_thread(body)


async def test_raw_calls_and_pages_of_both_clients(client: AsyncClient, server) -> None:
    from runwire.v1 import flow_service_pb2

    names = {unique("raw-a"), unique("raw-b")}
    for name in names:
        request = flow_service_pb2.CreateFlowRequest(flow={"name": name})
        assert (await client.call(client.flows.CreateFlow, request)).flow.name == name
    one_per_page = flow_service_pb2.ListFlowsRequest(page_size=1)
    listed = [f.name async for f in client.pages(client.flows.ListFlows, one_per_page, "flows")]
    assert names <= set(listed) and len(listed) == len(set(listed))
    assert one_per_page.page_token == ""  # the caller's request is left as it was

    def blocking() -> list[str]:
        with Client(f"127.0.0.1:{server.port}", timeout=10) as sync:
            return [f.name for f in sync.pages(sync.flows.ListFlows, one_per_page, "flows")]

    assert await asyncio.to_thread(blocking) == listed
