"""What a type checker sees of the runwire package: real types, for both clients and views.

`uv run mypy` checks this file with the repository's strict settings, and
tests/test_typing.py checks it as a user's project would see the installed package (through
its py.typed marker). Every function returns what a call gave, so with an untyped package
(everything `Any`) strict mypy fails with "Returning Any". Against a server it runs, too:
`uv run python examples/typed_usage.py` (start one with `uv run runwire server start`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pendulum

import runwire
from runwire import (
    AsyncClient,
    Client,
    FlowRunLog,
    FlowRunView,
    FlowView,
    OrchestrationResult,
    State,
    StateType,
    TaskRunView,
    proposed_state,
)
from runwire.v1 import state_pb2, watch_pb2


def flow_of(client: Client, name: str) -> FlowView:
    return client.create_flow(name, tags=["typed"])


def started_run(client: Client, flow: FlowView) -> FlowRunView:
    run: FlowRunView = client.create_flow_run(flow.flow_id, parameters={"n": 1})
    proposal: state_pb2.State = proposed_state(StateType.RUNNING)
    result: OrchestrationResult = client.set_flow_run_state(run.flow_run_id, proposal)
    assert result.written
    return run


def latest_state(view: FlowRunView) -> State:
    return view.get_latest().state


def updated_at(view: FlowRunView) -> pendulum.DateTime:
    return view.updated_at


def first_task(client: Client, run: FlowRunView) -> TaskRunView:
    return client.create_task_run(run.flow_run_id, "first")


def runs_counted(client: Client) -> int:
    return client.count_flow_runs()


def some_runs(client: Client) -> Iterator[FlowRunView]:
    return client.list_flow_runs(limit=3)


def tagged_runs(client: Client, tag: str) -> Iterator[FlowRunView]:
    return client.list_flow_runs(runwire.filters.flow_runs(tags_all=[tag]))


def log_lines(view: FlowRunView) -> list[FlowRunLog]:
    return view.get_logs(end_time=pendulum.now("UTC"))


def events(client: Client, run: FlowRunView) -> Iterator[watch_pb2.WatchFlowRunResponse]:
    return client.watch(run.flow_run_id, after_cursor=0)


def watched(run: FlowRunView) -> Iterator[FlowRunLog]:
    return runwire.watch_flow_run(run.flow_run_id)  # the current client's


async def async_flow(client: AsyncClient, name: str) -> FlowView:
    return await client.create_flow(name)


async def async_run(client: AsyncClient, flow: FlowView) -> FlowRunView:
    return await client.create_flow_run(flow.flow_id)


async def async_states(client: AsyncClient, run: FlowRunView) -> list[State]:
    return await client.list_flow_run_states(run.flow_run_id)


def async_runs(client: AsyncClient) -> AsyncIterator[FlowRunView]:
    return client.list_flow_runs(limit=3)


async def async_lines(client: AsyncClient, run: FlowRunView) -> list[FlowRunLog]:
    return [line async for line in client.list_logs(run.flow_run_id)]


async def async_task(client: AsyncClient, run: FlowRunView) -> TaskRunView:
    return await client.get_task_run_by_slug("first", run.flow_run_id)


def main() -> None:
    with Client() as client:  # RUNWIRE_API_URL, or 127.0.0.1:50051
        flow = flow_of(client, "typed-usage")
        run = started_run(client, flow)
        first_task(client, run)
        print(latest_state(run), updated_at(run).diff_for_humans(), runs_counted(client))
        print([r.name for r in some_runs(client)], log_lines(run))
        print([r.name for r in tagged_runs(client, "typed")])

    async def asynchronously() -> None:
        async with AsyncClient() as aclient:
            arun = await async_run(aclient, await async_flow(aclient, "typed-usage"))
            print(await async_states(aclient, arun), await async_lines(aclient, arun))
            print([r.name async for r in async_runs(aclient)], await async_task(aclient, run))

    asyncio.run(asynchronously())


if __name__ == "__main__":
    main()
