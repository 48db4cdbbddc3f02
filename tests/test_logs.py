"""LogService over gRPC: batched writes, filters, order, and 100,000 logs paged exactly."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc

from runwire.v1 import filters_pb2 as f
from runwire.v1 import log_pb2, task_run_pb2
from runwire.v1 import log_service_pb2 as lpb
from runwire.v1 import task_run_service_pb2 as tpb
from tests.helpers import expect_error, make_flow, make_run, ts

INVALID = grpc.StatusCode.INVALID_ARGUMENT
T0 = datetime(2031, 1, 1, tzinfo=UTC)


def for_run(run_id: str) -> f.LogFilter:
    return f.LogFilter(flow_run_id=f.StringFilter(any_of=f.StringList(values=[run_id])))


async def list_all(
    logs, flt: f.LogFilter, sort=f.LOG_SORT_UNSPECIFIED, page_size=200
) -> list[log_pb2.Log]:
    out: list[log_pb2.Log] = []
    token = ""
    while True:
        page = await logs.ListLogs(
            lpb.ListLogsRequest(filter=flt, sort=sort, page_size=page_size, page_token=token)
        )
        out += page.logs
        token = page.next_page_token
        if not token:
            return out


async def test_create_and_filter_logs(flows, runs, task_runs, logs):
    run = await make_run(runs, (await make_flow(flows)).id)
    task = (
        await task_runs.CreateTaskRun(
            tpb.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key="t")
            )
        )
    ).task_run
    batch = [
        log_pb2.Log(flow_run_id=run.id, name="flow", level=20, message="start", timestamp=ts(T0)),
        log_pb2.Log(
            flow_run_id=run.id,
            task_run_id=task.id,
            name="task",
            level=40,
            message="boom",
            timestamp=ts(T0 + timedelta(seconds=2)),
        ),
        log_pb2.Log(
            flow_run_id=run.id,
            name="flow",
            level=10,
            message="debug",
            timestamp=ts(T0 + timedelta(seconds=1)),
        ),
    ]
    created = await logs.CreateLogs(lpb.CreateLogsRequest(logs=batch))
    assert created.created_count == 3
    everything = await list_all(logs, for_run(run.id))
    assert [x.message for x in everything] == ["start", "debug", "boom"]
    assert everything[2].task_run_id == task.id and everything[2].name == "task"

    at_least_info = for_run(run.id)
    at_least_info.level.ge = 20
    assert [x.message for x in await list_all(logs, at_least_info)] == ["start", "boom"]
    only_flow = for_run(run.id)
    only_flow.task_run_id.is_null = True
    assert [x.message for x in await list_all(logs, only_flow)] == ["start", "debug"]
    window = for_run(run.id)
    window.timestamp.after.CopyFrom(ts(T0 + timedelta(seconds=1)))
    window.timestamp.before.CopyFrom(ts(T0 + timedelta(seconds=2)))
    assert [x.message for x in await list_all(logs, window)] == ["debug", "boom"]
    newest_first = await list_all(logs, for_run(run.id), sort=f.LOG_SORT_TIMESTAMP_DESC)
    assert [x.message for x in newest_first] == ["boom", "debug", "start"]
    by_level = await list_all(logs, for_run(run.id), sort=f.LOG_SORT_LEVEL_DESC)
    assert [x.level for x in by_level] == [40, 20, 10]
    # A log without a timestamp is stamped by the server.
    await logs.CreateLogs(
        lpb.CreateLogsRequest(logs=[log_pb2.Log(flow_run_id=run.id, level=20, message="now")])
    )
    assert (await list_all(logs, for_run(run.id)))[-1].timestamp.seconds > 0


async def test_bad_batches_store_nothing(flows, runs, task_runs, logs, server):
    run = await make_run(runs, (await make_flow(flows)).id)
    other = await make_run(runs, (await make_flow(flows)).id)
    other_task = (
        await task_runs.CreateTaskRun(
            tpb.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(flow_run_id=other.id, task_key="t")
            )
        )
    ).task_run
    good = log_pb2.Log(flow_run_id=run.id, level=20, message="ok")

    async def create(*extra: log_pb2.Log):
        return await logs.CreateLogs(lpb.CreateLogsRequest(logs=[good, *extra]))

    await expect_error(
        create(log_pb2.Log(flow_run_id=str(uuid.uuid4()), level=20)), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        create(log_pb2.Log(flow_run_id="bad", level=20)), INVALID, "logs[1].flow_run_id"
    )
    await expect_error(create(log_pb2.Log(flow_run_id=run.id, level=500)), INVALID, "logs[1].level")
    await expect_error(
        create(log_pb2.Log(flow_run_id=run.id, task_run_id=other_task.id, level=20)),
        INVALID,
        "logs[1].task_run_id",
    )
    limit = server.app.settings.max_logs_per_request
    await expect_error(
        logs.CreateLogs(lpb.CreateLogsRequest(logs=[good] * (limit + 1))), INVALID, "logs"
    )
    big = "x" * (server.app.settings.max_log_message_bytes + 1)
    await expect_error(
        create(log_pb2.Log(flow_run_id=run.id, level=20, message=big)), INVALID, "logs[1].message"
    )
    assert await list_all(logs, for_run(run.id)) == []
    await expect_error(logs.ListLogs(lpb.ListLogsRequest(sort=42)), INVALID, "sort")


async def test_100000_logs_page_in_order_with_no_duplicates_or_gaps(flows, runs, logs):
    run = await make_run(runs, (await make_flow(flows)).id)
    started = time.monotonic()
    total, per_batch = 100_000, 1000
    for batch in range(total // per_batch):
        # Many logs share a timestamp: order must still be total (timestamp, then id).
        entries = [
            log_pb2.Log(
                flow_run_id=run.id,
                level=20,
                message=f"{batch}-{i}",
                timestamp=ts(T0 + timedelta(milliseconds=(batch * per_batch + i) // 50)),
            )
            for i in range(per_batch)
        ]
        await logs.CreateLogs(lpb.CreateLogsRequest(logs=entries))
    written = time.monotonic()
    seen = await list_all(logs, for_run(run.id))
    paged = time.monotonic() - written
    print(f"wrote {total} logs in {written - started:.1f}s, paged them in {paged:.1f}s")
    assert len(seen) == total
    ids = [x.id for x in seen]
    assert len(set(ids)) == total
    keys = [(x.timestamp.ToDatetime(), uuid.UUID(x.id)) for x in seen]
    assert keys == sorted(keys)
