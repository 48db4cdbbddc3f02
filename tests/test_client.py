"""The runwire client library against a real server: views, caching rules, errors, watching.

The client is synchronous, so each test body runs in a worker thread while the in-process
server keeps serving on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import runwire
from runwire import Client, FlowRunView, Result, StateType, TaskRunView, proposed_state
from runwire.v1 import task_run_pb2, task_run_service_pb2
from tests.conftest import free_port, start_server_process


@pytest.fixture
def client(server) -> Iterator[Client]:
    with Client(f"127.0.0.1:{server.port}", timeout=10) as c:
        yield c


def in_thread(fn: Callable[[], Any]) -> Any:
    return asyncio.to_thread(fn)


def new_run(client: Client, **fields: Any) -> FlowRunView:
    flow = client.create_flow(f"client-{time.monotonic_ns()}")
    return client.create_flow_run(flow.flow_id, **fields)


def move(client: Client, run_id: str, *types: StateType) -> None:
    for t in types:
        result = client.set_flow_run_state(run_id, proposed_state(t))
        assert result.written, result


def task(client: Client, flow_run_id: str, key: str, **fields: Any) -> task_run_pb2.TaskRun:
    response = client.call(
        client.task_runs.CreateTaskRun,
        task_run_service_pb2.CreateTaskRunRequest(
            task_run=task_run_pb2.TaskRun(flow_run_id=flow_run_id, task_key=key, **fields)
        ),
    )
    return response.task_run


def finish_task(client: Client, task_run_id: str, value: bytes | None = None) -> None:
    for t in (StateType.RUNNING, StateType.COMPLETED):
        result = Result("json", inline_value=value) if value and t is StateType.COMPLETED else None
        client.call(
            client.task_runs.SetTaskRunState,
            task_run_service_pb2.SetTaskRunStateRequest(
                task_run_id=task_run_id, state=proposed_state(t, result=result)
            ),
        )


async def test_flow_run_view_fields_states_and_flow_metadata(client):
    def body():
        run = new_run(client, parameters={"n": 3}, labels={"team": "data"}, tags=["etl"])
        move(client, run.flow_run_id, StateType.RUNNING)
        view = FlowRunView.from_flow_run_id(run.flow_run_id, client=client)
        assert view.name == run.name and view.parameters == {"n": 3}
        assert view.labels == {"team": "data"} and view.tags == ("etl",)
        assert view.state.is_running() and not view.state.is_finished()
        assert [s.name for s in view.states] == ["Pending", "Running"]
        assert repr(view.state) == "<Running>"
        flow = view.get_flow_metadata()
        assert flow.flow_id == view.flow_id and view.get_flow_metadata() is flow
        assert view.get_flow_metadata(no_cache=True) is not flow
        with pytest.raises(AttributeError):
            view.name = "changed"  # type: ignore[misc]

    await in_thread(body)


async def test_get_logs_ends_at_the_view_time_by_default(client):
    def body():
        run = new_run(client)
        client.write_logs(run.flow_run_id, (logging.INFO, "first"), (logging.WARNING, "second"))
        move(client, run.flow_run_id, StateType.RUNNING)  # the run's last change
        view = FlowRunView.from_flow_run_id(run.flow_run_id, client=client)
        time.sleep(0.01)
        client.write_logs(run.flow_run_id, (logging.INFO, "after the view"))
        assert [log.message for log in view.get_logs()] == ["first", "second"]
        everything = view.get_logs(end_time=datetime.now(UTC))
        assert [log.message for log in everything][-1] == "after the view"
        # The start time is exclusive.
        assert view.get_logs(start_time=everything[0].timestamp) == []
        assert everything[1].level_name == "WARNING"

    await in_thread(body)


async def test_get_task_run_checks_its_arguments(client):
    def body():
        run = new_run(client)
        other = new_run(client)
        move(client, run.flow_run_id, StateType.RUNNING)
        move(client, other.flow_run_id, StateType.RUNNING)
        a = task(client, run.flow_run_id, "a")
        foreign = task(client, other.flow_run_id, "a")
        view = FlowRunView.from_flow_run_id(run.flow_run_id, client=client)
        assert view.get_task_run("a").task_run_id == a.id
        assert view.get_task_run(task_run_id=a.id, task_slug="a", map_index=-1).task_run_id == a.id
        with pytest.raises(ValueError, match="different slug"):
            view.get_task_run(task_slug="b", task_run_id=a.id)
        with pytest.raises(ValueError, match="different map index"):
            view.get_task_run(task_run_id=a.id, map_index=3)
        with pytest.raises(ValueError, match="belongs to flow run"):
            view.get_task_run(task_run_id=foreign.id)
        with pytest.raises(ValueError, match="must be provided"):
            view.get_task_run()
        with pytest.raises(runwire.NotFound):
            view.get_task_run("missing")

    await in_thread(body)


async def test_only_finished_task_runs_are_cached_and_get_latest_keeps_them(client):
    def body():
        run = new_run(client)
        move(client, run.flow_run_id, StateType.RUNNING)
        done = task(client, run.flow_run_id, "done")
        busy = task(client, run.flow_run_id, "busy")
        finish_task(client, done.id)
        view = FlowRunView.from_flow_run_id(run.flow_run_id, client=client)
        finished = view.get_task_run("done")
        unfinished = view.get_task_run("busy")
        assert view.get_task_run("done") is finished  # from the cache
        assert view.get_task_run("busy") is not unfinished  # fetched again
        finish_task(client, busy.id)
        latest = view.get_latest()
        assert latest is not view
        assert latest.get_task_run("done") is finished  # carried over
        assert latest.get_task_run("busy").state.is_completed()  # fresh
        everything = latest.get_all_task_runs()
        assert {t.task_slug for t in everything} == {"done", "busy"}
        assert latest.get_task_run_ids() == [done.id, busy.id]

    await in_thread(body)


async def test_load_static_tasks_prefetches_finished_tasks(client):
    def body():
        run = new_run(client)
        move(client, run.flow_run_id, StateType.RUNNING)
        done = task(client, run.flow_run_id, "static")
        finish_task(client, done.id)
        view = FlowRunView.from_flow_run_id(run.flow_run_id, load_static_tasks=True, client=client)
        assert done.id in view._cached_task_runs

    await in_thread(body)


async def test_task_results_and_mapped_children(client):
    def body():
        run = new_run(client)
        move(client, run.flow_run_id, StateType.RUNNING)
        single = task(client, run.flow_run_id, "single")
        with pytest.raises(ValueError, match="not finished"):
            TaskRunView.from_task_run_id(single.id, client=client).get_result()
        finish_task(client, single.id, b'{"answer": 42}')
        view = TaskRunView.from_task_run_id(single.id, client=client)
        assert view.get_result() == {"answer": 42}
        assert view.get_latest().get_result() == {"answer": 42}
        with pytest.raises(TypeError, match="not a mapped task"):
            next(view.iter_mapped())

        parent = task(client, run.flow_run_id, "square")
        children = [
            task(client, run.flow_run_id, "square", dynamic_key=str(i), map_index=i)
            for i in range(4)
        ]
        for i, child in enumerate(children):
            finish_task(client, child.id, str(i * i).encode())
        finish_task(client, parent.id)
        parent_view = TaskRunView.from_task_slug("square", run.flow_run_id, client=client)
        assert parent_view.get_result() == [0, 1, 4, 9]
        assert [c.map_index for c in parent_view.iter_mapped()] == [0, 1, 2, 3]
        with pytest.raises(TypeError):
            TaskRunView.from_task_run_id(123, client=client)  # type: ignore[arg-type]

    await in_thread(body)


async def test_errors_carry_the_servers_details(client):
    def body():
        with pytest.raises(runwire.NotFound) as caught:
            FlowRunView.from_flow_run_id("00000000-0000-0000-0000-000000000000", client=client)
        assert caught.value.reason == "RESOURCE_NOT_FOUND"
        with pytest.raises(runwire.InvalidArgument) as bad:
            client.get_flow("nope")
        assert bad.value.field == "flow_id"

    await in_thread(body)


async def test_watch_flow_run_yields_states_and_logs_until_the_end(client):
    def body():
        run = new_run(client)
        lines: list[str] = []

        def watcher() -> None:
            lines.extend(
                entry.message for entry in runwire.watch_flow_run(run.flow_run_id, client=client)
            )

        thread = threading.Thread(target=watcher)
        thread.start()
        move(client, run.flow_run_id, StateType.RUNNING)
        client.write_logs(run.flow_run_id, (logging.INFO, "working"))
        move(client, run.flow_run_id, StateType.COMPLETED)
        thread.join(timeout=30)
        assert lines == [
            "Entered state <Pending>: ",
            "Entered state <Running>: ",
            "working",
            "Entered state <Completed>: ",
        ]
        finished = list(runwire.watch_flow_run(run.flow_run_id, client=client))
        assert len(finished) == 1 and finished[0].message.startswith("Your flow run finished")

    await in_thread(body)


def test_watch_flow_run_survives_a_server_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runwire.db'}"
    address = f"127.0.0.1:{free_port()}"
    proc = start_server_process(url, address=address)
    with Client(address, timeout=10, retries=20) as client:
        run = new_run(client)
        move(client, run.flow_run_id, StateType.RUNNING)
        seen: list[str] = []
        watcher = threading.Thread(
            target=lambda: seen.extend(
                e.message for e in runwire.watch_flow_run(run.flow_run_id, client=client)
            )
        )
        watcher.start()
        client.write_logs(run.flow_run_id, *[(20, f"before-{i}") for i in range(50)])
        time.sleep(0.5)
        assert proc.stop() == 0  # the server goes away mid-run...
        proc = start_server_process(url, address=address)  # ...and comes back
        try:
            client.write_logs(run.flow_run_id, *[(20, f"after-{i}") for i in range(50)])
            move(client, run.flow_run_id, StateType.COMPLETED)
            watcher.join(timeout=60)
            assert not watcher.is_alive()
        finally:
            proc.stop()
    logs = [line for line in seen if not line.startswith("Entered state")]
    assert logs == [f"before-{i}" for i in range(50)] + [f"after-{i}" for i in range(50)]
    assert seen[-1] == "Entered state <Completed>: "


def test_watch_flow_runs_resumes_after_a_server_restart(tmp_path: Path) -> None:
    """Every state change of the watched runs arrives once, in order, across a restart."""
    from runwire.filters import flow_runs

    url = f"sqlite:///{tmp_path / 'runwire.db'}"
    address = f"127.0.0.1:{free_port()}"
    proc = start_server_process(url, address=address)
    seen: list[tuple[int, StateType]] = []
    try:
        with Client(address, timeout=10, retries=20) as client:
            run = new_run(client)

            def watch() -> None:
                criteria = flow_runs(ids=[run.flow_run_id])
                for cursor, _, state in client.watch_flow_runs(criteria, after_cursor=0):
                    seen.append((cursor, state.type))
                    if state.is_completed():
                        return

            watcher = threading.Thread(target=watch)
            watcher.start()
            move(client, run.flow_run_id, StateType.RUNNING)
            time.sleep(0.5)
            assert proc.stop() == 0  # the server goes away while the run is running...
            proc = start_server_process(url, address=address)  # ...and comes back
            move(client, run.flow_run_id, StateType.COMPLETED)
            watcher.join(timeout=60)
            assert not watcher.is_alive()
    finally:
        proc.stop()
    assert [kind for _, kind in seen] == [run.state.type, StateType.RUNNING, StateType.COMPLETED]
    assert [cursor for cursor, _ in seen] == sorted({cursor for cursor, _ in seen})


async def test_async_client(server):
    async with runwire.AsyncClient(f"127.0.0.1:{server.port}", timeout=10) as client:
        flow = await client.create_flow(f"async-{time.monotonic_ns()}")
        run = await client.create_flow_run(flow.flow_id, tags=["async"])
        lines: list[str] = []

        async def watch() -> None:
            async for line in client.watch_flow_run(run.flow_run_id):
                lines.append(line.message)

        watcher = asyncio.create_task(watch())
        await client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.RUNNING))
        await client.write_logs(run.flow_run_id, (logging.INFO, "async hello"))
        done = await client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.COMPLETED))
        assert done.status == "ACCEPT"
        await asyncio.wait_for(watcher, timeout=30)
        assert lines[-2:] == ["async hello", "Entered state <Completed>: "]

        from runwire.filters import flow_runs

        found = [r async for r in client.list_flow_runs(flow_runs(tags_all=["async"]))]
        assert run.flow_run_id in [r.flow_run_id for r in found]
        async for _ in client.list_flow_runs():
            break  # leaving a stream early stops it cleanly
        view = await client.get_flow_run(run.flow_run_id)
        assert view.state.is_completed()
        with pytest.raises(runwire.NotFound):
            await client.get_flow_run("00000000-0000-0000-0000-000000000000")


async def test_task_run_calls_and_the_graph(client):
    def body():
        run = new_run(client)
        move(client, run.flow_run_id, StateType.RUNNING)
        a = client.create_task_run(run.flow_run_id, "a")
        b = client.create_task_run(run.flow_run_id, "b", upstream={"x": [a.task_run_id]})
        assert client.create_task_run(run.flow_run_id, "a").task_run_id == a.task_run_id
        assert client.set_task_run_state(a.task_run_id, proposed_state(StateType.RUNNING)).written
        assert client.get_task_run(a.task_run_id).state.is_running()
        graph = {n.task_run_id: n.upstream for n in client.get_flow_run_graph(run.flow_run_id)}
        assert graph == {a.task_run_id: (), b.task_run_id: (a.task_run_id,)}
        from runwire.filters import flow_runs

        assert client.count_flow_runs(flow_runs(ids=[run.flow_run_id])) == 1
        assert client.count_flow_runs(flow_runs(ids=[])) == 0

    await in_thread(body)


async def test_deployments_limits_updates_history_and_watching_many(client):
    def body():
        from datetime import timedelta

        from runwire.filters import flow_runs

        flow = client.create_flow(f"more-{time.monotonic_ns()}")
        dep = client.create_deployment(flow.flow_id, "nightly", concurrency_limit=1)
        assert client.get_deployment(dep.deployment_id).concurrency_limit == 1
        assert dep.deployment_id in [d.deployment_id for d in client.list_deployments()]

        tag = f"db-{time.monotonic_ns()}"
        assert client.set_concurrency_limit(tag, 2).limit == 2
        assert client.get_concurrency_limit(tag).active_task_run_ids == ()
        assert tag in [limit.tag for limit in client.list_concurrency_limits()]
        client.delete_concurrency_limit(tag)
        with pytest.raises(runwire.NotFound):
            client.get_concurrency_limit(tag)

        run = client.create_flow_run(flow.flow_id, deployment_id=dep.deployment_id)
        renamed = client.update_flow_run(run.flow_run_id, name="renamed", tags=["x"])
        assert renamed.name == "renamed" and renamed.tags == ("x",)

        now = datetime.now(UTC)
        history = client.get_flow_run_history(
            now - timedelta(hours=1),
            now + timedelta(hours=1),
            timedelta(hours=1),
            flow_runs(ids=[run.flow_run_id]),
        )
        assert sum(sum(i.counts.values()) for i in history) == 1

        changes = client.watch_flow_runs(flow_runs(flow_ids=[flow.flow_id]), after_cursor=0)
        cursor, run_id, state = next(changes)
        assert (run_id, state.name) == (run.flow_run_id, "Pending") and cursor > 0
        changes.close()

        client.delete_deployment(dep.deployment_id)
        client.delete_flow(flow.flow_id)
        with pytest.raises(runwire.NotFound):
            client.get_flow(flow.flow_id)

    await in_thread(body)


FILTERS_FROM_THE_PACKAGE = """
import sys

import runwire

assert "filters" in dir(runwire) and "filters" in runwire.__all__
with runwire.Client(timeout=10) as client:
    flow = client.create_flow(sys.argv[1])
    run = client.create_flow_run(flow.flow_id, tags=["from-the-package"])
    criteria = runwire.filters.flow_runs(flow_name=sys.argv[1], tags_all=["from-the-package"])
    print(*[r.flow_run_id for r in client.list_flow_runs(criteria)], run.flow_run_id)
"""


async def test_filters_are_reached_from_a_plain_import_runwire(server):
    # A fresh interpreter: in this one, another test may have imported runwire.filters already.
    name = f"package-filters-{time.monotonic_ns()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FILTERS_FROM_THE_PACKAGE,
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "RUNWIRE_API_URL": f"127.0.0.1:{server.port}"},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    listed, created = out.decode().split()
    assert listed == created
