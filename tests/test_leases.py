"""Leases: a run that enters RUNNING holds one, its reporter renews it with heartbeats that
answer with the run's state, and the server ends the runs whose reporter went away (CRASHED,
or CANCELLED for a run that was cancelling), through the rules, with their watch events. On
SQLite and PostgreSQL; replicas reap each run once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pendulum
import pytest
from google.protobuf import duration_pb2

import runwire
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import (
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    task_run_pb2,
    task_run_service_pb2_grpc,
)
from runwire.v1 import state_pb2 as ST
from runwire.v1 import task_run_service_pb2 as tpb
from runwire.v1 import watch_pb2 as wpb
from runwire_server.server import RunningServer, serving
from tests.conftest import fresh_postgres_database, make_settings
from tests.helpers import expect_error, make_flow, make_run, unique

RUNNING = ST.State(type=ST.STATE_TYPE_RUNNING)
# Quick leases for the tests: the reaper looks every 0.2 s, and starts a second after the server.
QUICK = {"lease_seconds": 1, "lease_check_seconds": 0.2}


def seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=value))
    return out


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        self.runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        self.tasks = task_run_service_pb2_grpc.TaskRunServiceStub(channel)

    async def running_run(self, lease: float | None = None) -> str:
        flow = await make_flow(self.flows)
        run = await make_run(self.runs, flow.id)
        request = pb.SetFlowRunStateRequest(flow_run_id=run.id, state=RUNNING)
        if lease is not None:
            request.lease_duration.CopyFrom(seconds(lease))
        answer = await self.runs.SetFlowRunState(request)
        assert answer.result.state.type == ST.STATE_TYPE_RUNNING, answer
        return str(run.id)

    async def running_task(self, flow_run_id: str, key: str, lease: float | None = None) -> str:
        made = await self.tasks.CreateTaskRun(
            tpb.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(flow_run_id=flow_run_id, task_key=key)
            )
        )
        request = tpb.SetTaskRunStateRequest(task_run_id=made.task_run.id, state=RUNNING)
        if lease is not None:
            request.lease_duration.CopyFrom(seconds(lease))
        answer = await self.tasks.SetTaskRunState(request)
        assert answer.result.state.type == ST.STATE_TYPE_RUNNING, answer
        return str(made.task_run.id)

    async def flow_run(self, run_id: str) -> Any:
        return (await self.runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run_id))).flow_run

    async def task_run(self, task_id: str) -> Any:
        return (await self.tasks.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=task_id))).task_run

    async def states(self, run_id: str) -> list[str]:
        answer = await self.runs.ListFlowRunStates(pb.ListFlowRunStatesRequest(flow_run_id=run_id))
        return [s.name for s in answer.states]

    async def cancel(self, run_id: str) -> Any:
        answer = await self.runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=run_id, state=ST.State(type=ST.STATE_TYPE_CANCELLING)
            )
        )
        return answer.result


@asynccontextmanager
async def stubs_for(server: RunningServer) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Stubs(channel)


def expire_time(message: Any) -> datetime:
    assert message.HasField("lease_expire_time"), message
    return message.lease_expire_time.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Any], within: float = 15.0) -> Any:
    """Poll `check` (a coroutine function) until it returns something true."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


Factory = Callable[..., AbstractAsyncContextManager[RunningServer]]


def ended_leases(server: RunningServer, run_kind: str, state: str = "CRASHED") -> float:
    """What the server's metric counts of the runs it ended."""
    value = server.app.metrics.registry.get_sample_value(
        "runwire_leases_ended_total", {"run_kind": run_kind, "state": state}
    )
    return value or 0.0


async def test_running_takes_a_lease_that_a_final_state_gives_up(
    server_factory: Factory, database_overrides: dict[str, Any]
) -> None:
    async with (
        server_factory(lease_seconds=60, lease_check_seconds=3600, **database_overrides) as srv,
        stubs_for(srv) as s,
    ):
        before = datetime.now(UTC)
        run_id = await s.running_run()
        run = await s.flow_run(run_id)
        default_end = expire_time(run)
        assert before + timedelta(seconds=59) < default_end < datetime.now(UTC) + timedelta(60)
        # A length the reporter names wins, for the task run as for the flow run.
        task_id = await s.running_task(run_id, "extract", lease=10)
        task_end = expire_time(await s.task_run(task_id))
        assert task_end < datetime.now(UTC) + timedelta(seconds=10.5)
        # CANCELLING keeps the lease (the reporter must still finish); CANCELLED gives it up.
        assert (await s.cancel(run_id)).state.type == ST.STATE_TYPE_CANCELLING
        assert expire_time(await s.flow_run(run_id)) == default_end
        done = await s.runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=run_id, state=ST.State(type=ST.STATE_TYPE_CANCELLED)
            )
        )
        assert done.result.state.type == ST.STATE_TYPE_CANCELLED
        assert not (await s.flow_run(run_id)).HasField("lease_expire_time")
        await s.tasks.SetTaskRunState(
            tpb.SetTaskRunStateRequest(
                task_run_id=task_id, state=ST.State(type=ST.STATE_TYPE_COMPLETED)
            )
        )
        assert not (await s.task_run(task_id)).HasField("lease_expire_time")


async def test_no_default_lease_means_none_unless_the_reporter_asks(
    server_factory: Factory,
) -> None:
    async with server_factory(lease_seconds=0) as srv, stubs_for(srv) as s:
        plain = await s.running_run()
        assert not (await s.flow_run(plain)).HasField("lease_expire_time")
        beat = await s.runs.HeartbeatFlowRun(pb.HeartbeatFlowRunRequest(flow_run_id=plain))
        assert beat.state.type == ST.STATE_TYPE_RUNNING and not beat.HasField("lease_expire_time")
        asked = await s.running_run(lease=30)
        assert expire_time(await s.flow_run(asked)) > datetime.now(UTC) + timedelta(seconds=29)


async def test_a_heartbeat_renews_and_tells_the_reporter_the_runs_state(
    server_factory: Factory, database_overrides: dict[str, Any]
) -> None:
    async with (
        server_factory(lease_seconds=60, lease_check_seconds=3600, **database_overrides) as srv,
        stubs_for(srv) as s,
    ):
        run_id = await s.running_run(lease=20)
        first = expire_time(await s.flow_run(run_id))
        task_id = await s.running_task(run_id, "load", lease=5)
        other_run = await s.running_run()
        strangers_task = await s.running_task(other_run, "other", lease=5)
        await asyncio.sleep(0.01)
        beat = await s.runs.HeartbeatFlowRun(
            pb.HeartbeatFlowRunRequest(flow_run_id=run_id, task_run_ids=[task_id, strangers_task])
        )
        # The length the run took is kept, counted from now; only this run's tasks are renewed.
        assert beat.state.type == ST.STATE_TYPE_RUNNING
        assert expire_time(beat) > first
        assert list(beat.renewed_task_run_ids) == [task_id]
        assert expire_time(await s.task_run(task_id)) == expire_time(beat)
        assert expire_time(await s.task_run(strangers_task)) < expire_time(beat)
        longer = await s.runs.HeartbeatFlowRun(
            pb.HeartbeatFlowRunRequest(flow_run_id=run_id, lease_duration=seconds(600))
        )
        assert expire_time(longer) > datetime.now(UTC) + timedelta(seconds=599)
        # A cancellation reaches the reporter through its next heartbeat.
        await s.cancel(run_id)
        told = await s.runs.HeartbeatFlowRun(pb.HeartbeatFlowRunRequest(flow_run_id=run_id))
        assert told.state.type == ST.STATE_TYPE_CANCELLING and told.HasField("lease_expire_time")
        task_beat = await s.tasks.HeartbeatTaskRun(tpb.HeartbeatTaskRunRequest(task_run_id=task_id))
        assert task_beat.state.type == ST.STATE_TYPE_RUNNING
        assert expire_time(task_beat) > datetime.now(UTC) + timedelta(seconds=4)
        # A finished run holds no lease, and a heartbeat says so without changing it.
        await s.runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=run_id, state=ST.State(type=ST.STATE_TYPE_CANCELLED)
            )
        )
        after = await s.runs.HeartbeatFlowRun(pb.HeartbeatFlowRunRequest(flow_run_id=run_id))
        assert after.state.type == ST.STATE_TYPE_CANCELLED
        assert not after.HasField("lease_expire_time")
        assert await s.states(run_id) == ["Pending", "Running", "Cancelling", "Cancelled"]


async def test_bad_leases_are_refused_naming_the_field_and_change_nothing(
    server_factory: Factory,
) -> None:
    async with server_factory(max_lease_seconds=3600) as srv, stubs_for(srv) as s:
        flow = await make_flow(s.flows)
        run = await make_run(s.runs, flow.id)
        for bad in (0, 0.5, 3601, -5):
            await expect_error(
                s.runs.SetFlowRunState(
                    pb.SetFlowRunStateRequest(
                        flow_run_id=run.id, state=RUNNING, lease_duration=seconds(bad)
                    )
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "lease_duration",
            )
        assert await s.states(run.id) == ["Pending"]
        running = await s.running_run()
        await expect_error(
            s.runs.HeartbeatFlowRun(
                pb.HeartbeatFlowRunRequest(flow_run_id=running, lease_duration=seconds(7200))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "lease_duration",
        )
        await expect_error(
            s.runs.HeartbeatFlowRun(
                pb.HeartbeatFlowRunRequest(flow_run_id=running, task_run_ids=["nope"])
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "task_run_ids[0]",
        )
        await expect_error(
            s.runs.HeartbeatFlowRun(
                pb.HeartbeatFlowRunRequest(flow_run_id=running, task_run_ids=[running] * 1001)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "task_run_ids",
        )
        await expect_error(
            s.tasks.HeartbeatTaskRun(tpb.HeartbeatTaskRunRequest(task_run_id=running)),
            grpc.StatusCode.NOT_FOUND,
        )
        with pytest.raises(ValueError, match="RUNWIRE_LEASE_SECONDS"):
            make_settings(Path("unused.db"), lease_seconds=0.5)


async def test_a_run_whose_reporter_stops_heartbeating_crashes_with_its_events(
    server_factory: Factory, database_overrides: dict[str, Any]
) -> None:
    async with server_factory(**QUICK, **database_overrides) as srv, stubs_for(srv) as s:
        run_id = await s.running_run(lease=1)
        task_id = await s.running_task(run_id, "extract", lease=1)
        kept = await s.running_task(run_id, "kept", lease=60)
        watch = s.runs.WatchFlowRun(
            wpb.WatchFlowRunRequest(flow_run_id=run_id, include_task_runs=True, stream_logs=False)
        )
        seen: list[str] = []
        async for event in watch:
            if event.HasField("flow_run_state"):
                seen.append(f"flow:{event.flow_run_state.state.name}")
            elif event.HasField("task_run_state"):
                seen.append(f"task:{event.task_run_state.state.name}")
            if "flow:Crashed" in seen and "task:Crashed" in seen:
                watch.cancel()
                break
        # The stream ends when the run does: a task whose lease the reaper ends a moment after
        # the run's is not in it, and is read instead.
        for _ in range(100):
            if (await s.task_run(task_id)).state.type == ST.STATE_TYPE_CRASHED:
                break
            await asyncio.sleep(0.1)
        crashed = await s.flow_run(run_id)
        assert crashed.state.type == ST.STATE_TYPE_CRASHED
        assert "stopped heartbeating" in crashed.state.message
        assert not crashed.HasField("lease_expire_time")
        assert crashed.HasField("end_time")
        assert (await s.task_run(task_id)).state.type == ST.STATE_TYPE_CRASHED
        # A lease that has not ended is left alone.
        assert (await s.task_run(kept)).state.type == ST.STATE_TYPE_RUNNING
        assert await s.states(run_id) == ["Pending", "Running", "Crashed"]
        assert ended_leases(srv, "flow_run") == 1
        assert ended_leases(srv, "task_run") == 1


async def test_a_cancellation_with_no_reporter_left_is_cancelled_at_once(
    server_factory: Factory,
) -> None:
    # The reaper waits an hour: what happens here is the rules' doing.
    async with (
        server_factory(lease_seconds=1, lease_check_seconds=3600) as srv,
        stubs_for(srv) as s,
    ):
        gone = await s.running_run(lease=1)
        alive = await s.running_run(lease=60)
        await asyncio.sleep(1.1)
        assert (await s.cancel(gone)).state.type == ST.STATE_TYPE_CANCELLED
        assert (await s.cancel(alive)).state.type == ST.STATE_TYPE_CANCELLING
        assert await s.states(gone) == ["Pending", "Running", "Cancelled"]


async def test_a_cancelling_run_whose_reporter_went_is_cancelled(
    server_factory: Factory,
) -> None:
    async with server_factory(**QUICK) as srv, stubs_for(srv) as s:
        run_id = await s.running_run(lease=1)
        assert (await s.cancel(run_id)).state.type == ST.STATE_TYPE_CANCELLING

        async def cancelled() -> bool:
            return bool((await s.flow_run(run_id)).state.type == ST.STATE_TYPE_CANCELLED)

        assert await eventually(cancelled)
        assert await s.states(run_id) == ["Pending", "Running", "Cancelling", "Cancelled"]
        message = (await s.flow_run(run_id)).state.message
        assert "stopped heartbeating" in message


async def test_leases_survive_a_restart_and_reporters_get_a_lease_length_to_return(
    tmp_path: Path,
) -> None:
    db = tmp_path / "restart.db"
    async with (
        serving(make_settings(db, lease_seconds=2, lease_check_seconds=3600)) as first,
        stubs_for(first) as s,
    ):
        run_id = await s.running_run(lease=1)
        renewed = await s.running_run(lease=1)
    await asyncio.sleep(1.1)  # both leases end while no server runs
    started = time.monotonic()
    async with (
        serving(make_settings(db, lease_seconds=2, lease_check_seconds=0.2)) as second,
        stubs_for(second) as s,
    ):
        # A reporter that comes back within the server's lease length keeps its run.
        await s.runs.HeartbeatFlowRun(
            pb.HeartbeatFlowRunRequest(flow_run_id=renewed, lease_duration=seconds(60))
        )

        async def crashed() -> bool:
            return bool((await s.flow_run(run_id)).state.type == ST.STATE_TYPE_CRASHED)

        assert await eventually(crashed)
        assert time.monotonic() - started >= 2  # not before the grace
        assert (await s.flow_run(renewed)).state.type == ST.STATE_TYPE_RUNNING


REPORTER = """
import sys, time
import grpc
from google.protobuf import duration_pb2
from runwire.v1 import flow_run_service_pb2 as pb, flow_run_service_pb2_grpc, state_pb2

channel = grpc.insecure_channel(sys.argv[1])
runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
lease = duration_pb2.Duration(seconds=2)
runs.SetFlowRunState(pb.SetFlowRunStateRequest(
    flow_run_id=sys.argv[2], state=state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING),
    lease_duration=lease))
print("running", flush=True)
while True:
    runs.HeartbeatFlowRun(pb.HeartbeatFlowRunRequest(flow_run_id=sys.argv[2]))
    time.sleep(0.3)
"""


async def test_a_reporter_killed_with_sigkill_leaves_a_run_that_crashes_within_its_lease(
    server_factory: Factory,
) -> None:
    async with (
        server_factory(lease_seconds=1, lease_check_seconds=0.5) as srv,
        stubs_for(srv) as s,
    ):
        flow = await make_flow(s.flows)
        run = await make_run(s.runs, flow.id)
        reporter = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            REPORTER,
            f"127.0.0.1:{srv.port}",
            run.id,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert reporter.stdout is not None
            assert await reporter.stdout.readline() == b"running\n"
            # Heartbeats keep it running past several lease lengths.
            await asyncio.sleep(3)
            assert (await s.flow_run(run.id)).state.type == ST.STATE_TYPE_RUNNING
            reporter.send_signal(signal.SIGKILL)
            killed = time.monotonic()
        finally:
            if reporter.returncode is None:
                reporter.kill()
            await reporter.wait()

        async def crashed() -> bool:
            return bool((await s.flow_run(run.id)).state.type == ST.STATE_TYPE_CRASHED)

        assert await eventually(crashed, within=10)
        # Within the lease (2 s) plus the reaper's interval (0.5 s), and a margin for a
        # busy machine.
        assert time.monotonic() - killed < 2 + 0.5 + 3


async def test_replicas_reap_each_run_once(tmp_path: Path) -> None:
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    with fresh_postgres_database(base) as url:
        async with (
            serving(make_settings(tmp_path / "a.db", database_url=url, **QUICK)) as a,
            serving(make_settings(tmp_path / "b.db", database_url=url, **QUICK)) as b,
            stubs_for(a) as s,
        ):
            run_ids = [await s.running_run(lease=1) for _ in range(30)]

            async def all_crashed() -> bool:
                found = [await s.flow_run(run_id) for run_id in run_ids]
                return all(r.state.type == ST.STATE_TYPE_CRASHED for r in found)

            assert await eventually(all_crashed, within=20)
            for run_id in run_ids:
                assert await s.states(run_id) == ["Pending", "Running", "Crashed"]
            assert ended_leases(a, "flow_run") + ended_leases(b, "flow_run") == len(run_ids)


async def test_the_client_library_takes_and_renews_leases(server_factory: Factory) -> None:
    async with (
        server_factory(lease_seconds=60, lease_check_seconds=3600) as srv,
        runwire.AsyncClient(f"127.0.0.1:{srv.port}", timeout=10) as client,
    ):
        flow = await client.create_flow(unique("leased"))
        run = await client.create_flow_run(flow.flow_id)
        running = runwire.proposed_state("RUNNING")
        await client.set_flow_run_state(run.flow_run_id, running, lease=timedelta(seconds=30))
        task = await client.create_task_run(run.flow_run_id, "step")
        await client.set_task_run_state(task.task_run_id, running, lease=5)
        beat = await client.heartbeat_flow_run(
            run.flow_run_id, lease=120, task_run_ids=[task.task_run_id]
        )
        assert isinstance(beat, runwire.Lease)
        assert beat.state is not None and beat.state.type == runwire.StateType.RUNNING
        assert beat.expires is not None and beat.expires > pendulum.now("UTC").add(seconds=119)
        assert beat.renewed_task_run_ids == (task.task_run_id,)
        task_beat = await client.heartbeat_task_run(task.task_run_id)
        assert task_beat.expires is not None and task_beat.renewed_task_run_ids == ()
