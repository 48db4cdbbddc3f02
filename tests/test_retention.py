"""Retention: watch events of runs finished longer ago than the window are pruned (each run
keeps its final state), cursors older than what is kept are refused with OUT_OF_RANGE and the
client library starts over by itself, and finished runs go too when asked. On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, func, select

import runwire
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import (
    flow_run_service_pb2_grpc,
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
from runwire_server.server import RunningServer
from runwire_server.storage import models as m
from runwire_server.storage import retention
from tests.helpers import expect_error, make_flow, make_run

WINDOW = 1.0


async def finished_run(channel: grpc.aio.Channel, flow_id: str, *, finish: bool = True) -> str:
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
    logs = log_service_pb2_grpc.LogServiceStub(channel)
    run = await make_run(runs, flow_id)
    await runs.SetFlowRunState(
        pb.SetFlowRunStateRequest(
            flow_run_id=run.id, state=state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING)
        )
    )
    await logs.CreateLogs(
        log_service_pb2.CreateLogsRequest(
            logs=[log_pb2.Log(flow_run_id=run.id, level=20, message=f"{i}") for i in range(5)]
        )
    )
    if finish:
        await runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=run.id, state=state_pb2.State(type=state_pb2.STATE_TYPE_COMPLETED)
            )
        )
    return str(run.id)


def events_of(server: RunningServer, run_id: str) -> list[str]:
    engine = create_engine(server.app.db.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(m.RunEvent.kind)
                .where(m.RunEvent.flow_run_id == uuid.UUID(run_id))
                .order_by(m.RunEvent.seq)
            )
            return [kind for (kind,) in rows]
    finally:
        engine.dispose()


def count(server: RunningServer, model: Any) -> int:
    engine = create_engine(server.app.db.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


async def read_all(stream: Any) -> list[watch_pb2.WatchFlowRunResponse]:
    return [message async for message in stream]


async def test_events_of_old_finished_runs_are_pruned(server_factory, database_overrides):
    async with (
        server_factory(
            **database_overrides,
            event_retention_seconds=WINDOW,
            retention_interval_seconds=3600,  # passes run when the test says
        ) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        flow = await make_flow(flows)
        old = await finished_run(channel, flow.id)
        active = await finished_run(channel, flow.id, finish=False)
        deleted = await finished_run(channel, flow.id)
        await runs.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id=deleted))
        assert events_of(running, old).count("log") == 5
        assert (await running.retention.prune()) == {"events": 0, "run_deletions": 0}

        await asyncio.sleep(WINDOW + 0.2)
        recent = await finished_run(channel, flow.id)  # finished inside the window: kept
        late = log_pb2.Log(flow_run_id=old, level=20, message="after the end")
        await log_service_pb2_grpc.LogServiceStub(channel).CreateLogs(
            log_service_pb2.CreateLogsRequest(logs=[late])
        )
        removed = await running.retention.prune()
        assert removed == {"events": 2 + 5, "run_deletions": 1}  # Pending, Running, 5 logs
        # The final state stays, and so does a line logged inside the window.
        assert events_of(running, old) == ["flow_run_state", "log"]
        assert events_of(running, active).count("log") == 5
        assert events_of(running, recent).count("log") == 5
        assert count(running, m.RunDeletion) == 0
        metrics = running.app.metrics.registry
        assert metrics.get_sample_value("runwire_pruned_rows_total", {"kind": "events"}) == 7
        # A pass finds nothing more to do, and ListLogs still has the run's logs.
        assert (await running.retention.prune()) == {"events": 0, "run_deletions": 0}
        logs = log_service_pb2_grpc.LogServiceStub(channel)
        listed = await logs.ListLogs(
            log_service_pb2.ListLogsRequest(
                filter=_logs_of(old),
            )
        )
        assert len(listed.logs) == 6

        # Without a cursor, a watch of the old run starts from its final state and ends.
        seen = await read_all(runs.WatchFlowRun(watch_pb2.WatchFlowRunRequest(flow_run_id=old)))
        kinds = [s.WhichOneof("event") for s in seen]
        assert kinds == ["log", "flow_run_state", "caught_up", "end"]  # the late line is kept
        assert seen[1].flow_run_state.state.type == state_pb2.STATE_TYPE_COMPLETED

        # A cursor older than what was pruned may have missed events: refused, for a watch of
        # the pruned run and for a watch of every run.
        for stream in (
            runs.WatchFlowRun(watch_pb2.WatchFlowRunRequest(flow_run_id=old, after_cursor=1)),
            runs.WatchFlowRuns(watch_pb2.WatchFlowRunsRequest(after_cursor=1)),
        ):
            details = await expect_error(stream.read(), grpc.StatusCode.OUT_OF_RANGE)
            assert details.reason == "CURSOR_EXPIRED"
            assert "list the runs again" in details.message
        # A run that lost nothing replays everything after the same cursor.
        replay = runs.WatchFlowRun(
            watch_pb2.WatchFlowRunRequest(flow_run_id=active, after_cursor=1)
        )
        kinds = []
        async for message in replay:
            kinds.append(message.WhichOneof("event"))
            if kinds[-1] == "caught_up":
                replay.cancel()
                break
        assert kinds.count("log") == 5 and kinds.count("flow_run_state") == 2
        # A list's cursor is always recent enough.
        listed_runs = await runs.ListFlowRuns(pb.ListFlowRunsRequest())
        fresh = runs.WatchFlowRuns(
            watch_pb2.WatchFlowRunsRequest(after_cursor=listed_runs.watch_cursor)
        )
        assert (await fresh.read()).WhichOneof("event") == "caught_up"
        fresh.cancel()


def _logs_of(run_id: str) -> Any:
    from runwire.v1 import filters_pb2

    return filters_pb2.LogFilter(
        flow_run_id=filters_pb2.StringFilter(any_of=filters_pb2.StringList(values=[run_id]))
    )


async def test_the_client_library_starts_over_when_its_cursor_expired(server_factory):
    async with (
        server_factory(event_retention_seconds=WINDOW, retention_interval_seconds=3600) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        flow = await make_flow(flow_service_pb2_grpc.FlowServiceStub(channel))
        old = await finished_run(channel, flow.id)
        await asyncio.sleep(WINDOW + 0.2)
        await running.retention.prune()

        def watch() -> list[Any]:
            with runwire.Client(f"127.0.0.1:{running.port}") as client:
                return list(client.watch(old, after_cursor=1))

        seen = await asyncio.to_thread(watch)
        states = [s for s in seen if s.WhichOneof("event") == "flow_run_state"]
        assert [s.flow_run_state.state.type for s in states] == [state_pb2.STATE_TYPE_COMPLETED]


async def test_the_client_library_says_when_a_watch_of_many_runs_missed_changes(
    server_factory,
):
    """A watch of many runs cannot start over by itself without missing changes: the client
    raises CURSOR_EXPIRED, and its caller lists again."""
    async with (
        server_factory(event_retention_seconds=WINDOW, retention_interval_seconds=3600) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        flow = await make_flow(flow_service_pb2_grpc.FlowServiceStub(channel))
        await finished_run(channel, flow.id)
        await asyncio.sleep(WINDOW + 0.2)
        await running.retention.prune()

        def watch() -> None:
            with runwire.Client(f"127.0.0.1:{running.port}") as client:
                for _ in client.watch_flow_runs(after_cursor=1):
                    pass

        with pytest.raises(runwire.OutOfRange) as caught:
            await asyncio.to_thread(watch)
        assert caught.value.reason == "CURSOR_EXPIRED"


async def test_finished_runs_are_deleted_when_asked(server_factory, database_overrides):
    async with (
        server_factory(
            **database_overrides,
            run_retention_seconds=WINDOW,
            event_retention_seconds=0,
            retention_interval_seconds=3600,
        ) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        task_runs = task_run_service_pb2_grpc.TaskRunServiceStub(channel)
        flow = await make_flow(flows)
        old = await finished_run(channel, flow.id, finish=False)
        task = await task_runs.CreateTaskRun(
            task_run_service_pb2.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(flow_run_id=old, task_key="t")
            )
        )
        await runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=old, state=state_pb2.State(type=state_pb2.STATE_TYPE_FAILED)
            )
        )
        active = await finished_run(channel, flow.id, finish=False)
        await asyncio.sleep(WINDOW + 0.2)
        assert await running.retention.prune() == {"flow_runs": 1}
        await expect_error(
            runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=old)), grpc.StatusCode.NOT_FOUND
        )
        await expect_error(
            task_runs.GetTaskRun(
                task_run_service_pb2.GetTaskRunRequest(task_run_id=task.task_run.id)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        logs = log_service_pb2_grpc.LogServiceStub(channel)
        assert (
            list((await logs.ListLogs(log_service_pb2.ListLogsRequest(filter=_logs_of(old)))).logs)
            == []
        )
        await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=active))
        assert count(running, m.RunEvent) == len(events_of(running, active))


async def test_pruning_runs_by_itself_in_the_background(server_factory):
    async with (
        server_factory(event_retention_seconds=0.2, retention_interval_seconds=0.2) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        flow = await make_flow(flow_service_pb2_grpc.FlowServiceStub(channel))
        old = await finished_run(channel, flow.id)
        deadline = time.monotonic() + 10
        while events_of(running, old) != ["flow_run_state"]:
            assert time.monotonic() < deadline, events_of(running, old)
            await asyncio.sleep(0.1)


def test_retention_settings_are_checked() -> None:
    from runwire_server.settings import Settings

    for bad in ({"event_retention_seconds": -1}, {"retention_interval_seconds": 0}):
        with pytest.raises(ValueError, match=f"RUNWIRE_{next(iter(bad)).upper()}"):
            Settings.load(bad, environ={})


async def test_a_batch_removes_a_bounded_number_of_rows(server_factory, database_overrides):
    """A run with many events is pruned over several batches, none removing more rows than its
    bound, and the run's final state stays."""
    async with (
        server_factory(
            **database_overrides, event_retention_seconds=WINDOW, retention_interval_seconds=3600
        ) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        flow = await make_flow(flow_service_pb2_grpc.FlowServiceStub(channel))
        big = await finished_run(channel, flow.id, finish=False)
        logs = log_service_pb2_grpc.LogServiceStub(channel)
        for batch in range(3):
            await logs.CreateLogs(
                log_service_pb2.CreateLogsRequest(
                    logs=[
                        log_pb2.Log(flow_run_id=big, level=20, message=f"{batch}-{i}")
                        for i in range(100)
                    ]
                )
            )
        await flow_run_service_pb2_grpc.FlowRunServiceStub(channel).SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=big, state=state_pb2.State(type=state_pb2.STATE_TYPE_COMPLETED)
            )
        )
        await asyncio.sleep(WINDOW + 0.2)
        cutoff = datetime.now(UTC) - timedelta(seconds=WINDOW)
        step = partial(
            retention.prune_events, finished_before=cutoff, cutoff=cutoff, runs=10, rows=100
        )
        batches = []
        while True:
            batch = await running.app.db.write(step)
            batches.append(batch.rows)
            if not batch.more:
                break
        assert max(batches) <= 100 and sum(batches) == 2 + 305  # Pending, Running, the logs
        assert events_of(running, big) == ["flow_run_state"]
