"""WatchFlowRun over gRPC: order, replay, resume by cursor, heartbeats, idle cost, endings."""

from __future__ import annotations

import asyncio
import random
import uuid

import grpc
from google.protobuf import duration_pb2
from sqlalchemy import event

from runwire.v1 import (
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_pb2,
    task_run_pb2,
)
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import log_service_pb2 as lpb
from runwire.v1 import state_pb2 as ST
from runwire.v1 import task_run_service_pb2 as tpb
from runwire.v1 import watch_pb2 as wpb
from tests.helpers import expect_error, make_flow, make_run

END = wpb.StreamEnd


def kind(message: wpb.WatchFlowRunResponse) -> str:
    return message.WhichOneof("event") or ""


def describe(message: wpb.WatchFlowRunResponse) -> str:
    k = kind(message)
    if k == "flow_run_state":
        return f"flow:{message.flow_run_state.state.name}"
    if k == "task_run_state":
        return f"task:{message.task_run_state.task_key}:{message.task_run_state.state.name}"
    if k == "log":
        return f"log:{message.log.message}"
    if k == "end":
        return f"end:{END.Reason.Name(message.end.reason)}"
    return k


async def propose(runs, run_id: str, type_: int) -> None:
    await runs.SetFlowRunState(
        pb.SetFlowRunStateRequest(flow_run_id=run_id, state=ST.State(type=type_))
    )


async def log(logs, run_id: str, *messages: str) -> None:
    await logs.CreateLogs(
        lpb.CreateLogsRequest(
            logs=[log_pb2.Log(flow_run_id=run_id, level=20, message=m) for m in messages]
        )
    )


def watch(runs, run_id: str, **kw):
    return runs.WatchFlowRun(wpb.WatchFlowRunRequest(flow_run_id=run_id, **kw))


async def read_until(stream, predicate) -> list[wpb.WatchFlowRunResponse]:
    out = []
    while True:
        message = await stream.read()
        if message is grpc.aio.EOF:
            return out
        out.append(message)
        if predicate(message):
            return out


async def read_all(stream) -> list[wpb.WatchFlowRunResponse]:
    return await read_until(stream, lambda m: False)


async def test_a_live_run_streams_in_order_and_ends_by_itself(flows, runs, task_runs, logs):
    run = await make_run(runs, (await make_flow(flows)).id)
    stream = watch(runs, run.id, include_task_runs=True)
    opening = await read_until(stream, lambda m: kind(m) == "caught_up")
    assert [describe(m) for m in opening] == ["flow:Pending", "caught_up"]

    async def drive():
        await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
        await log(logs, run.id, "hello")
        task = (
            await task_runs.CreateTaskRun(
                tpb.CreateTaskRunRequest(
                    task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key="t")
                )
            )
        ).task_run
        await task_runs.SetTaskRunState(
            tpb.SetTaskRunStateRequest(
                task_run_id=task.id, state=ST.State(type=ST.STATE_TYPE_RUNNING)
            )
        )
        await log(logs, run.id, "working", "done")
        await task_runs.SetTaskRunState(
            tpb.SetTaskRunStateRequest(
                task_run_id=task.id, state=ST.State(type=ST.STATE_TYPE_COMPLETED)
            )
        )
        await propose(runs, run.id, ST.STATE_TYPE_COMPLETED)

    driver = asyncio.create_task(drive())
    rest = await read_all(stream)  # ends by itself
    await driver
    assert [describe(m) for m in rest] == [
        "flow:Running",
        "log:hello",
        "task:t:Pending",
        "task:t:Running",
        "log:working",
        "log:done",
        "task:t:Completed",
        "flow:Completed",
        "end:REASON_RUN_FINISHED",
    ]
    cursors = [m.cursor for m in opening + rest]
    assert cursors == sorted(cursors)
    assert len({m.cursor for m in rest[:-1]}) == len(rest) - 1
    assert await stream.code() == grpc.StatusCode.OK


async def test_a_finished_run_replays_and_ends(flows, runs, logs):
    run = await make_run(runs, (await make_flow(flows)).id)
    await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
    await log(logs, run.id, "a", "b")
    await propose(runs, run.id, ST.STATE_TYPE_COMPLETED)
    snapshot = [describe(m) async for m in watch(runs, run.id)]
    assert snapshot == ["log:a", "log:b", "flow:Completed", "caught_up", "end:REASON_RUN_FINISHED"]
    everything = [describe(m) async for m in watch(runs, run.id, after_cursor=0)]
    assert everything == [
        "flow:Pending",
        "flow:Running",
        "log:a",
        "log:b",
        "flow:Completed",
        "caught_up",
        "end:REASON_RUN_FINISHED",
    ]
    states_only = [
        describe(m) async for m in watch(runs, run.id, after_cursor=0, stream_logs=False)
    ]
    assert "log:a" not in states_only and states_only[-1] == "end:REASON_RUN_FINISHED"


async def test_watch_errors(runs):
    await expect_error(watch(runs, str(uuid.uuid4())).read(), grpc.StatusCode.NOT_FOUND)
    await expect_error(watch(runs, "x").read(), grpc.StatusCode.INVALID_ARGUMENT, "flow_run_id")
    await expect_error(
        watch(
            runs, str(uuid.uuid4()), heartbeat_interval=duration_pb2.Duration(seconds=100_000)
        ).read(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "heartbeat_interval",
    )
    await expect_error(
        watch(runs, str(uuid.uuid4()), after_cursor=-1).read(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "after_cursor",
    )


async def test_heartbeats_carry_the_last_cursor(flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
    stream = watch(runs, run.id, heartbeat_interval=duration_pb2.Duration(nanos=100_000_000))
    opening = await read_until(stream, lambda m: kind(m) == "caught_up")
    beats = [await stream.read() for _ in range(3)]
    assert all(kind(b) == "heartbeat" for b in beats)
    assert all(b.cursor == opening[-1].cursor for b in beats)
    assert beats[-1].heartbeat.time_in_state.ToTimedelta().total_seconds() > 0.2
    stream.cancel()


async def test_resuming_with_the_cursor_loses_and_repeats_nothing(flows, runs, logs):
    """The stream is dropped at 50 random points while 1,000 events are written."""
    run = await make_run(runs, (await make_flow(flows)).id)
    total_logs = 997  # + Pending, Running, Completed = 1,000 events

    async def write():
        await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
        for start in range(0, total_logs, 20):
            await log(logs, run.id, *[f"m{i}" for i in range(start, min(start + 20, total_logs))])
            await asyncio.sleep(0.005)
        await propose(runs, run.id, ST.STATE_TYPE_COMPLETED)

    writer = asyncio.create_task(write())
    seen: list[wpb.WatchFlowRunResponse] = []
    cursor = 0
    rng = random.Random(7)
    drops = 0
    finished = False
    while not finished:
        stream = watch(runs, run.id, after_cursor=cursor)
        budget = rng.randint(1, 30) if drops < 50 else 10**9
        async for message in stream:
            cursor = message.cursor
            if kind(message) == "end":
                finished = True
                break
            if kind(message) in ("flow_run_state", "log"):
                seen.append(message)
                budget -= 1
                if budget == 0:
                    stream.cancel()  # the connection drops here
                    drops += 1
                    break
    await writer
    assert drops == 50
    cursors = [m.cursor for m in seen]
    assert len(cursors) == 1000 and len(set(cursors)) == 1000 and cursors == sorted(cursors)
    assert [m.log.message for m in seen if kind(m) == "log"] == [f"m{i}" for i in range(total_logs)]


async def test_idle_watchers_make_no_database_queries(flows, runs, server):
    run = await make_run(runs, (await make_flow(flows)).id)
    await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
    streams = [
        watch(runs, run.id, heartbeat_interval=duration_pb2.Duration(nanos=100_000_000))
        for _ in range(20)
    ]
    for stream in streams:
        await read_until(stream, lambda m: kind(m) == "caught_up")
    statements = 0

    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        nonlocal statements
        statements += 1
        seen.append(statement)

    # One heartbeat each first: by then any work from the writes above is done.
    beats = await asyncio.gather(*[stream.read() for stream in streams])
    event.listen(server.app.db.engine, "before_cursor_execute", count)
    try:
        await asyncio.sleep(0.5)
        beats += await asyncio.gather(*[stream.read() for stream in streams])
    finally:
        event.remove(server.app.db.engine, "before_cursor_execute", count)
    assert all(kind(b) == "heartbeat" for b in beats)
    assert statements == 0, seen
    for stream in streams:
        stream.cancel()


async def test_a_slow_watcher_catches_up_from_storage(server_factory):
    async with (
        server_factory(watch_buffer_events=5) as small,
        grpc.aio.insecure_channel(f"127.0.0.1:{small.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        from runwire.v1 import log_service_pb2_grpc

        logs = log_service_pb2_grpc.LogServiceStub(channel)
        flow = (
            await flows.CreateFlow(flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="f")))
        ).flow
        run = (
            await runs.CreateFlowRun(
                pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id))
            )
        ).flow_run
        stream = watch(runs, run.id)
        await read_until(stream, lambda m: kind(m) == "caught_up")
        await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
        for i in range(10):  # far more than the watcher's buffer holds, all unread
            await log(logs, run.id, *[f"{i}-{j}" for j in range(20)])
        await propose(runs, run.id, ST.STATE_TYPE_COMPLETED)
        rest = [describe(m) for m in await read_all(stream)]
        assert rest[0] == "flow:Running" and rest[-2:] == [
            "flow:Completed",
            "end:REASON_RUN_FINISHED",
        ]
        assert [r for r in rest if r.startswith("log:")] == [
            f"log:{i}-{j}" for i in range(10) for j in range(20)
        ]


async def test_shutdown_and_deletion_end_streams(server_factory):
    async with (
        server_factory() as extra,
        grpc.aio.insecure_channel(f"127.0.0.1:{extra.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        flow = (
            await flows.CreateFlow(flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="f")))
        ).flow

        async def new_run():
            return (
                await runs.CreateFlowRun(
                    pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id))
                )
            ).flow_run

        doomed = await new_run()
        stream = watch(runs, doomed.id)
        await read_until(stream, lambda m: kind(m) == "caught_up")
        await runs.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id=doomed.id))
        assert [describe(m) for m in await read_all(stream)] == ["end:REASON_RUN_DELETED"]

        kept = await new_run()
        stream = watch(runs, kept.id)
        await read_until(stream, lambda m: kind(m) == "caught_up")
        stopping = asyncio.create_task(extra.stop(grace=1))
        last = await stream.read()
        assert describe(last) == "end:REASON_SERVER_SHUTDOWN" and last.cursor > 0
        await expect_error(stream.read(), grpc.StatusCode.UNAVAILABLE)
        await stopping


def runs_watch(runs, criteria, **kw):
    return runs.WatchFlowRuns(wpb.WatchFlowRunsRequest(filter=criteria, **kw))


async def test_list_then_watch_matching_runs_with_no_gap(flows, runs):
    from runwire.v1 import filters_pb2 as f

    flow = await make_flow(flows)
    other = await make_flow(flows)
    first = await make_run(runs, flow.id)
    only_flow = f.FlowRunCriteria(
        flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
    )
    listed = await runs.ListFlowRuns(pb.ListFlowRunsRequest(filter=only_flow))
    assert [r.id for r in listed.flow_runs] == [first.id] and listed.watch_cursor > 0

    # Changes between the list and the watch are not lost...
    second = await make_run(runs, flow.id)
    await propose(runs, first.id, ST.STATE_TYPE_RUNNING)
    stream = runs_watch(runs, only_flow, after_cursor=listed.watch_cursor)
    replayed = await read_until(stream, lambda m: kind(m) == "caught_up")
    assert [(m.flow_run_state.flow_run_id, m.flow_run_state.state.name) for m in replayed[:-1]] == [
        (second.id, "Pending"),
        (first.id, "Running"),
    ]
    # ...and live changes of matching runs follow, in order; other runs are left out.
    elsewhere = await make_run(runs, other.id)
    await propose(runs, elsewhere.id, ST.STATE_TYPE_RUNNING)
    await propose(runs, second.id, ST.STATE_TYPE_RUNNING)
    await propose(runs, first.id, ST.STATE_TYPE_COMPLETED)
    live = [await stream.read() for _ in range(2)]
    assert [(m.flow_run_state.flow_run_id, m.flow_run_state.state.name) for m in live] == [
        (second.id, "Running"),
        (first.id, "Completed"),
    ]
    cursors = [m.cursor for m in replayed + live]
    assert cursors == sorted(cursors)
    stream.cancel()


async def test_watch_runs_from_now_and_errors(flows, runs):
    from runwire.v1 import filters_pb2 as f

    flow = await make_flow(flows)
    only_flow = f.FlowRunCriteria(
        flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
    )
    await make_run(runs, flow.id)  # before the watch: not sent
    stream = runs_watch(
        runs, only_flow, heartbeat_interval=duration_pb2.Duration(nanos=200_000_000)
    )
    assert [kind(m) for m in await read_until(stream, lambda m: kind(m) == "caught_up")] == [
        "caught_up"
    ]
    run = await make_run(runs, flow.id)
    message = await stream.read()
    assert message.flow_run_state.flow_run_id == run.id
    assert kind(await stream.read()) == "heartbeat"
    stream.cancel()
    bad = f.FlowRunCriteria(
        flow_runs=f.FlowRunFilter(id=f.StringFilter(any_of=f.StringList(values=["x"])))
    )
    await expect_error(
        runs_watch(runs, bad).read(), grpc.StatusCode.INVALID_ARGUMENT, "filter.flow_runs.id.any_of"
    )


async def test_a_cursor_from_the_future_is_out_of_range(flows, runs):
    from runwire.v1 import filters_pb2 as f

    run = await make_run(runs, (await make_flow(flows)).id)
    details = await expect_error(
        watch(runs, run.id, after_cursor=10**15).read(), grpc.StatusCode.OUT_OF_RANGE
    )
    assert details.reason == "CURSOR_OUT_OF_RANGE" and details.metadata["cursor"] == str(10**15)
    await expect_error(
        runs_watch(runs, f.FlowRunCriteria(), after_cursor=10**15).read(),
        grpc.StatusCode.OUT_OF_RANGE,
    )


async def test_more_than_a_thousand_watchers_at_once(flows, runs, server):
    """gRPC's default limit of 1,000 pending calls would cancel the rest; the server lifts it."""
    run = await make_run(runs, (await make_flow(flows)).id)
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=[("grpc.channel_id", i)])
        for i in range(6)
    ]
    try:
        streams = [
            flow_run_service_pb2_grpc.FlowRunServiceStub(channels[i % 6]).WatchFlowRun(
                # Opening 1,100 streams can take longer than the default heartbeat (10 s) on a slow
                # machine; this test is about the pending-call limit, not heartbeats.
                wpb.WatchFlowRunRequest(flow_run_id=run.id, heartbeat_interval={"seconds": 300})
            )
            for i in range(1100)
        ]
        openings = await asyncio.gather(
            *[read_until(s, lambda m: kind(m) == "caught_up") for s in streams]
        )
        assert all(opening[-1].WhichOneof("event") == "caught_up" for opening in openings)
        await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
        changes = await asyncio.gather(*[s.read() for s in streams])
        assert {describe(m) for m in changes} == {"flow:Running"}
        for stream in streams:
            stream.cancel()
    finally:
        for channel in channels:
            await channel.close()


async def test_a_slow_watcher_of_a_deleted_run_hears_of_the_delete(server_factory):
    """The run-deleted end can be the very event a full buffer drops; the run's stored events
    went with the run, so the watcher learns of the delete from its record. How many events
    the buffer holds when the delete arrives depends on how many the stream took first, so
    each count of unread events up to three buffers' worth is tried."""
    async with (
        server_factory(watch_buffer_events=5) as small,
        grpc.aio.insecure_channel(f"127.0.0.1:{small.port}") as channel,
    ):
        from runwire.v1 import log_service_pb2_grpc

        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        logs = log_service_pb2_grpc.LogServiceStub(channel)
        flow = await make_flow(flow_service_pb2_grpc.FlowServiceStub(channel))
        for unread in range(1, 16):
            run = await make_run(runs, flow.id)
            stream = watch(runs, run.id)
            await read_until(stream, lambda m: kind(m) == "caught_up")
            # Large lines: they fill the stream's flow-control window, then the buffer.
            await log(logs, run.id, *[f"{i % 10}" * 60_000 for i in range(unread)])
            await runs.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id=run.id))
            rest = [describe(m) for m in await asyncio.wait_for(read_all(stream), 15)]
            assert rest[-1] == "end:REASON_RUN_DELETED", (unread, rest[-3:])
