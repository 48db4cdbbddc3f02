"""The workloads: each starts what it measures and returns its figures."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf import duration_pb2
from sqlalchemy import create_engine, insert

from bench.empty_server import METHOD, NAIVE_WRITE
from bench.harness import ROOT, Figure, Measured, measure, start_runwire
from runwire.v1 import (
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
)
from runwire_server.convert import timestamp
from runwire_server.ids import new_id
from runwire_server.storage import models as m

CHANNELS = 4  # client connections; concurrent calls are spread over them


def channels(port: int) -> list[grpc.aio.Channel]:
    return [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(CHANNELS)]


async def close(chans: list[grpc.aio.Channel]) -> None:
    for channel in chans:
        await channel.close()


async def empty_rpc(concurrencies: tuple[int, ...], calls: int) -> list[Figure]:
    """The ceiling for one RPC on this machine, at each concurrency; then the naive write."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.empty_server",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stdin is not None
    port = int(await process.stdout.readline())
    chans = channels(port)
    try:
        calls_of = [c.unary_unary(METHOD) for c in chans]
        server = Measured(process.pid)
        figures = []
        for concurrency in concurrencies:
            await measure(
                "empty RPC",
                f"c={concurrency}",
                server,
                lambda i: calls_of[i % CHANNELS](b""),
                calls // 10,
                concurrency,
            )  # warm-up
            figures.append(
                await measure(
                    "empty RPC",
                    f"concurrency {concurrency}",
                    server,
                    lambda i: calls_of[i % CHANNELS](b""),
                    calls,
                    concurrency,
                )
            )
        # The naive design (one SQLite transaction per call) at the goals' concurrency.
        writes_of = [c.unary_unary(NAIVE_WRITE) for c in chans]
        body = bytes(300)  # about a state change's row
        figures.append(
            await measure(
                "naive write",
                "one SQLite transaction per call, concurrency 16",
                server,
                lambda i: writes_of[i % CHANNELS](body),
                calls // 2,
                16,
            )
        )
        return figures
    finally:
        await close(chans)
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 30)


async def _flow(chan: grpc.aio.Channel, name: str) -> str:
    flows = flow_service_pb2_grpc.FlowServiceStub(chan)
    response = await flows.CreateFlow(
        flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=name))
    )
    return str(response.flow.id)


LOG_BATCH = 100  # lines a CreateLogs call carries


async def lifecycle(
    database_url: str, concurrencies: tuple[int, ...], runs: int, log_batches: int = 0
) -> list[Figure]:
    """Create a run, then RUNNING, then COMPLETED: 3 state-changing RPCs a run. Then, on the
    same server, `log_batches` CreateLogs calls of LOG_BATCH lines each at concurrency 16."""
    proc = start_runwire(database_url)
    chans = channels(proc.port)
    try:
        stubs = [flow_run_service_pb2_grpc.FlowRunServiceStub(c) for c in chans]
        flow_id = await _flow(chans[0], "bench-lifecycle")
        server = Measured(proc.process.pid)
        created: list[str] = []

        async def one(i: int) -> None:
            stub = stubs[i % CHANNELS]
            run = await stub.CreateFlowRun(
                flow_run_service_pb2.CreateFlowRunRequest(
                    flow_run=flow_run_pb2.FlowRun(flow_id=flow_id)
                )
            )
            created.append(run.flow_run.id)
            for state_type in (state_pb2.STATE_TYPE_RUNNING, state_pb2.STATE_TYPE_COMPLETED):
                await stub.SetFlowRunState(
                    flow_run_service_pb2.SetFlowRunStateRequest(
                        flow_run_id=run.flow_run.id, state=state_pb2.State(type=state_type)
                    )
                )

        figures = []
        for concurrency in concurrencies:
            figure = await measure(
                "lifecycle",
                f"concurrency {concurrency}",
                server,
                one,
                runs,
                concurrency,
                unit="runs",
                calls_per_op=3,
            )
            figures.append(figure)
        if log_batches:
            log_stubs = [log_service_pb2_grpc.LogServiceStub(c) for c in chans]

            async def create_logs(i: int) -> None:
                run_id = created[i % len(created)]
                batch = [
                    log_pb2.Log(flow_run_id=run_id, name="bench", level=20, message=f"line {n}")
                    for n in range(LOG_BATCH)
                ]
                await log_stubs[i % CHANNELS].CreateLogs(
                    log_service_pb2.CreateLogsRequest(logs=batch)
                )

            figures.append(
                await measure(
                    "CreateLogs",
                    f"{LOG_BATCH} lines a call, concurrency 16",
                    server,
                    create_logs,
                    log_batches,
                    16,
                    unit="calls",
                    max_seconds=30,
                )
            )
        return figures
    finally:
        await close(chans)
        proc.stop()


async def task_heavy(database_url: str, tasks: int, logs_per_task: int = 10) -> list[Figure]:
    """One flow run with `tasks` task runs, each created, then PENDING, RUNNING, COMPLETED,
    with its logs sent in one batch: 5 calls a task run."""
    proc = start_runwire(database_url)
    chans = channels(proc.port)
    try:
        task_stubs = [task_run_service_pb2_grpc.TaskRunServiceStub(c) for c in chans]
        log_stubs = [log_service_pb2_grpc.LogServiceStub(c) for c in chans]
        flow_id = await _flow(chans[0], "bench-tasks")
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(chans[0])
        run = (
            await runs.CreateFlowRun(
                flow_run_service_pb2.CreateFlowRunRequest(
                    flow_run=flow_run_pb2.FlowRun(flow_id=flow_id)
                )
            )
        ).flow_run
        await runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(
                flow_run_id=run.id, state=state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING)
            )
        )
        server = Measured(proc.process.pid)

        async def one(i: int) -> None:
            stub = task_stubs[i % CHANNELS]
            task = (
                await stub.CreateTaskRun(
                    task_run_service_pb2.CreateTaskRunRequest(
                        task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key=f"task-{i}")
                    )
                )
            ).task_run
            for state_type in (
                state_pb2.STATE_TYPE_PENDING,
                state_pb2.STATE_TYPE_RUNNING,
                state_pb2.STATE_TYPE_COMPLETED,
            ):
                if state_type == state_pb2.STATE_TYPE_COMPLETED:
                    batch = [
                        log_pb2.Log(
                            flow_run_id=run.id,
                            task_run_id=task.id,
                            name="task",
                            level=20,
                            message=f"step {n}",
                        )
                        for n in range(logs_per_task)
                    ]
                    await log_stubs[i % CHANNELS].CreateLogs(
                        log_service_pb2.CreateLogsRequest(logs=batch)
                    )
                await stub.SetTaskRunState(
                    task_run_service_pb2.SetTaskRunStateRequest(
                        task_run_id=task.id, state=state_pb2.State(type=state_type)
                    )
                )

        return [
            await measure(
                "task-heavy run",
                f"{tasks} task runs, {logs_per_task} logs each, concurrency 16",
                server,
                one,
                tasks,
                16,
                unit="task runs",
                calls_per_op=5,
            )
        ]
    finally:
        await close(chans)
        proc.stop()


def _in_state(
    state_id: uuid.UUID, kind: str, start: datetime, end: datetime | None
) -> dict[str, object]:
    """The columns of a run created and started at `start`, in state `kind` since `end` (or
    since it started, while RUNNING)."""
    return {
        "created": start,
        "updated": start,
        "state_id": state_id,
        "state_type": kind,
        "state_name": kind.title(),
        "state_timestamp": end or start,
        "run_count": 1,
        "expected_start_time": start,
        "start_time": start,
        "end_time": end,
        "total_run_time": (end - start).total_seconds() if end else 0.0,
    }


def seed_runs(database_url: str, count: int) -> None:
    """`count` finished runs of one flow, written straight into the schema (the API would take
    hours for a million). States spread over 30 days; a third each COMPLETED, FAILED, RUNNING."""
    from runwire_server.storage.database import Database

    db = Database(database_url)
    db.prepare_schema()
    db.close()
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    flow_id = new_id()
    kinds = ("COMPLETED", "FAILED", "RUNNING")
    with engine.begin() as conn:
        conn.execute(
            insert(m.Flow),
            [{"id": flow_id, "name": "bench-seeded", "created": now, "updated": now}],
        )
    batch = 20_000
    for first in range(0, count, batch):
        runs, states = [], []
        for n in range(first, min(count, first + batch)):
            run_id, state_id = new_id(), new_id()
            start = now - timedelta(seconds=random.uniform(0, 30 * 86_400))
            kind = kinds[n % 3]
            end = None if kind == "RUNNING" else start + timedelta(seconds=30)
            runs.append(
                {
                    "id": run_id,
                    "name": f"seeded-{n}",
                    "flow_id": flow_id,
                    **_in_state(state_id, kind, start, end),
                }
            )
            states.append(
                {
                    "id": state_id,
                    "flow_run_id": run_id,
                    "type": kind,
                    "name": kind.title(),
                    "timestamp": end or start,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(m.FlowRun), runs)
            conn.execute(insert(m.FlowRunState), states)
    engine.dispose()


SEEDED_CHILDREN = 10_000  # task runs, and log lines, of one seeded flow run


def seed_children(database_url: str, count: int = SEEDED_CHILDREN) -> str:
    """`count` task runs and `count` log lines of one seeded flow run (its id is returned),
    written straight into the schema: a third each COMPLETED, FAILED and RUNNING, over a day."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        run_id = conn.scalar(m.FlowRun.__table__.select().with_only_columns(m.FlowRun.id).limit(1))
    assert run_id is not None, "seed_runs first"
    now = datetime.now(UTC)
    kinds = ("COMPLETED", "FAILED", "RUNNING")
    tasks, states, logs = [], [], []
    for n in range(count):
        task_id, state_id = new_id(), new_id()
        start = now - timedelta(seconds=86_400 * n / count)
        kind = kinds[n % 3]
        end = None if kind == "RUNNING" else start + timedelta(seconds=2)
        tasks.append(
            {
                "id": task_id,
                "name": f"task-{n}",
                "flow_run_id": run_id,
                "task_key": f"task-{n}",
                "dynamic_key": str(n),
                "task_inputs": {"x": [{"inputType": "INPUT_TYPE_PARAMETER", "parameterName": "x"}]},
                **_in_state(state_id, kind, start, end),
            }
        )
        states.append(
            {
                "id": state_id,
                "task_run_id": task_id,
                "type": kind,
                "name": kind.title(),
                "timestamp": end or start,
            }
        )
        logs.append(
            {
                "id": new_id(),
                "flow_run_id": run_id,
                "task_run_id": task_id,
                "name": "bench.task",
                "level": 20,
                "message": f"step {n} of the seeded run",
                "timestamp": start,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(m.TaskRun), tasks)
        conn.execute(insert(m.TaskRunState), states)
        conn.execute(insert(m.Log), logs)
    engine.dispose()
    return str(run_id)


def seeded_run_ids(database_url: str, stored: int) -> list[str]:
    """Seed `stored` runs straight through the schema; the ids of up to 10,000 of them."""
    started = time.perf_counter()
    seed_runs(database_url, stored)
    print(f"  seeded {stored:,} runs in {time.perf_counter() - started:.0f}s", flush=True)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        ids = [
            str(r)
            for r in conn.execute(
                m.FlowRun.__table__.select().with_only_columns(m.FlowRun.id).limit(10_000)
            ).scalars()
        ]
    engine.dispose()
    return ids


async def reads(database_url: str, stored: int, calls: int, heavy_calls: int) -> list[Figure]:
    """GetFlowRun and ListFlowRuns over `stored` runs; CountFlowRuns and GetFlowRunHistory too;
    then ListTaskRuns and ListLogs of one run with SEEDED_CHILDREN of each."""
    ids = seeded_run_ids(database_url, stored)
    parent = seed_children(database_url)
    proc = start_runwire(database_url)
    chans = channels(proc.port)
    try:
        stubs = [flow_run_service_pb2_grpc.FlowRunServiceStub(c) for c in chans]
        stubs_tasks = [task_run_service_pb2_grpc.TaskRunServiceStub(c) for c in chans]
        stubs_logs = [log_service_pb2_grpc.LogServiceStub(c) for c in chans]
        server = Measured(proc.process.pid)
        completed = filters_pb2.FlowRunCriteria(
            flow_runs=filters_pb2.FlowRunFilter(
                state=filters_pb2.StateFilter(
                    type=filters_pb2.StateTypeFilter(
                        any_of=filters_pb2.StateTypeList(values=[state_pb2.STATE_TYPE_COMPLETED])
                    )
                )
            )
        )
        label = f"{stored:,} runs"
        now = datetime.now(UTC)

        async def get(i: int) -> None:
            await stubs[i % CHANNELS].GetFlowRun(
                flow_run_service_pb2.GetFlowRunRequest(flow_run_id=ids[i % len(ids)])
            )

        async def list_page(i: int) -> None:
            await stubs[i % CHANNELS].ListFlowRuns(
                flow_run_service_pb2.ListFlowRunsRequest(
                    filter=completed, page_size=50, sort=filters_pb2.FLOW_RUN_SORT_START_TIME_DESC
                )
            )

        walk = {"token": ""}

        async def walk_pages(i: int) -> None:
            # Page after page through every COMPLETED run, then again: more runs than the
            # server keeps messages of (RUNWIRE_KEPT_RUN_MESSAGES), so each page is built anew.
            listed = await stubs[i % CHANNELS].ListFlowRuns(
                flow_run_service_pb2.ListFlowRunsRequest(
                    filter=completed,
                    page_size=50,
                    sort=filters_pb2.FLOW_RUN_SORT_START_TIME_DESC,
                    page_token=walk["token"],
                )
            )
            walk["token"] = listed.next_page_token

        of_parent = filters_pb2.StringFilter(any_of=filters_pb2.StringList(values=[parent]))

        async def list_tasks(i: int) -> None:
            await stubs_tasks[i % CHANNELS].ListTaskRuns(
                task_run_service_pb2.ListTaskRunsRequest(
                    filter=task_run_service_pb2.TaskRunCriteria(
                        task_runs=filters_pb2.TaskRunFilter(flow_run_id=of_parent)
                    ),
                    page_size=50,
                    sort=filters_pb2.TASK_RUN_SORT_EXPECTED_START_TIME_DESC,
                )
            )

        async def list_logs(i: int) -> None:
            await stubs_logs[i % CHANNELS].ListLogs(
                log_service_pb2.ListLogsRequest(
                    filter=filters_pb2.LogFilter(flow_run_id=of_parent),
                    page_size=50,
                    sort=filters_pb2.LOG_SORT_TIMESTAMP_ASC,
                )
            )

        async def count(i: int) -> None:
            await stubs[i % CHANNELS].CountFlowRuns(
                flow_run_service_pb2.CountFlowRunsRequest(filter=completed)
            )

        async def history(i: int) -> None:
            await stubs[i % CHANNELS].GetFlowRunHistory(
                flow_run_service_pb2.GetFlowRunHistoryRequest(
                    history_start=timestamp(now - timedelta(days=31)),
                    history_end=timestamp(now),
                    history_interval=duration_pb2.Duration(seconds=86_400),
                ),
                timeout=120,
            )

        await measure("reads", "warm-up", server, get, 200, 16)
        return [
            await measure(
                "GetFlowRun", f"{label}, concurrency 16", server, get, calls, 16, max_seconds=60
            ),
            await measure(
                "ListFlowRuns",
                f"{label}, 50 COMPLETED by start time, concurrency 1",
                server,
                list_page,
                calls // 4,
                1,
                max_seconds=60,
            ),
            await measure(
                "ListFlowRuns",
                f"{label}, the same, every page in turn, concurrency 1",
                server,
                walk_pages,
                calls // 4,
                1,
                max_seconds=60,
            ),
            await measure(
                "CountFlowRuns",
                f"{label}, COMPLETED, concurrency 1",
                server,
                count,
                heavy_calls,
                1,
                max_seconds=60,
            ),
            await measure(
                "GetFlowRunHistory",
                f"{label}, 31 daily intervals, concurrency 1",
                server,
                history,
                heavy_calls,
                1,
                max_seconds=60,
            ),
            await measure(
                "ListTaskRuns",
                f"{label}, 50 of a run's {SEEDED_CHILDREN:,} by start time, concurrency 1",
                server,
                list_tasks,
                calls // 4,
                1,
                max_seconds=60,
            ),
            await measure(
                "ListLogs",
                f"{label}, 50 of a run's {SEEDED_CHILDREN:,} lines, concurrency 1",
                server,
                list_logs,
                calls // 4,
                1,
                max_seconds=60,
            ),
        ]
    finally:
        await close(chans)
        proc.stop()


def watch(changes: int, idle: int, protocols: str = "grpc") -> list[str]:
    """bench/watch.py's figures (fan-out delay, idle watchers' memory), as it prints them."""
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("watch.py")),
            "--changes",
            str(changes),
            "--idle",
            str(idle),
            "--protocols",
            protocols,
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return [line for line in result.stdout.splitlines() if line.strip()]
