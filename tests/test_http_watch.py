"""Watch streams over the HTTP edge: Connect server streaming (enveloped JSON or binary frames
read with httpx, and the generated Connect client) and gRPC-Web (the generated client, and by
hand). Events in order, caught_up, heartbeats, typed ends, resuming from a cursor, the runs of
a filter, stream errors, response headers, and the watch quota both edges share."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from connectrpc.protocol import ProtocolType
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from runwire.v1 import filters_pb2 as f
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import (
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    log_pb2,
    task_run_pb2,
    watch_pb2,
)
from runwire.v1 import log_service_pb2 as lpb
from runwire.v1 import state_pb2 as ST
from runwire.v1 import task_run_service_pb2 as tpb
from runwire_server.server import RunningServer
from tests.helpers import expect_error, make_flow, make_run
from tests.http_wire import (
    CONNECT_CLIENT,
    CONNECT_JSON,
    CONNECT_PROTO,
    END_STREAM,
    GRPC_WEB,
    ConnectHttpx,
    Edge,
    EdgeError,
    Frames,
    GeneratedClient,
    envelope,
    grpc_web_answer,
    grpc_web_request,
    path_of,
)

STREAM_PROTOCOLS = (CONNECT_JSON, CONNECT_PROTO, CONNECT_CLIENT, GRPC_WEB)
END = watch_pb2.StreamEnd
STREAM_HEADERS = {"x-accel-buffering": "no", "cache-control": "no-store"}


def base_url(running: RunningServer) -> str:
    assert running.http_port is not None
    return f"http://127.0.0.1:{running.http_port}"


def make_edge(protocol: str, url: str, http: httpx.AsyncClient) -> Edge:
    if protocol == GRPC_WEB:
        return GeneratedClient(url, ProtocolType.GRPC_WEB)
    if protocol == CONNECT_CLIENT:
        return GeneratedClient(url, ProtocolType.CONNECT)
    return ConnectHttpx(url, http, binary=protocol == CONNECT_PROTO)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture(params=STREAM_PROTOCOLS)
def edge(request: pytest.FixtureRequest, server: RunningServer, http: httpx.AsyncClient) -> Edge:
    return make_edge(request.param, base_url(server), http)


def kind(message: Any) -> str:
    return message.WhichOneof("event") or ""


def describe(message: Any) -> str:
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


async def read_until(stream: Any, last: str, seconds: float = 30) -> list[Any]:
    """Messages up to and with the first of kind `last`."""
    out = []
    async with asyncio.timeout(seconds):
        while True:
            out.append(await stream.read())
            if kind(out[-1]) == last:
                return out


async def read_all(stream: Any, seconds: float = 30) -> list[Any]:
    """Every message until the stream ends (cleanly: an error end raises)."""
    async with asyncio.timeout(seconds):
        return [message async for message in stream]


async def propose(runs: Any, run_id: str, type_: int) -> None:
    await runs.SetFlowRunState(
        pb.SetFlowRunStateRequest(flow_run_id=run_id, state=ST.State(type=type_))
    )


async def log(logs: Any, run_id: str, *messages: str) -> None:
    await logs.CreateLogs(
        lpb.CreateLogsRequest(
            logs=[log_pb2.Log(flow_run_id=run_id, level=20, message=m) for m in messages]
        )
    )


def watch(run_id: str, **fields: Any) -> watch_pb2.WatchFlowRunRequest:
    return watch_pb2.WatchFlowRunRequest(flow_run_id=run_id, **fields)


def flow_criteria(flow_id: str) -> f.FlowRunCriteria:
    return f.FlowRunCriteria(
        flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow_id])))
    )


# --- one run's events --------------------------------------------------------------------------


async def test_a_live_run_streams_in_order_and_ends_by_itself(edge, flows, runs, task_runs, logs):
    run = await make_run(runs, (await make_flow(flows)).id)
    async with edge.stream(
        "FlowRunService/WatchFlowRun", watch(run.id, include_task_runs=True)
    ) as stream:
        opening = await read_until(stream, "caught_up")
        assert [describe(m) for m in opening] == ["flow:Pending", "caught_up"]
        await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
        await log(logs, run.id, "hello ✓")
        task = (
            await task_runs.CreateTaskRun(
                tpb.CreateTaskRunRequest(
                    task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key="t")
                )
            )
        ).task_run
        for type_ in (ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_COMPLETED):
            await task_runs.SetTaskRunState(
                tpb.SetTaskRunStateRequest(task_run_id=task.id, state=ST.State(type=type_))
            )
        await log(logs, run.id, "working", "done")
        await propose(runs, run.id, ST.STATE_TYPE_COMPLETED)
        rest = await read_all(stream)  # ends by itself, without an error
    assert [describe(m) for m in rest] == [
        "flow:Running",
        "log:hello ✓",
        "task:t:Pending",
        "task:t:Running",
        "task:t:Completed",
        "log:working",
        "log:done",
        "flow:Completed",
        "end:REASON_RUN_FINISHED",
    ]
    cursors = [m.cursor for m in opening + rest]
    assert cursors == sorted(cursors) and len(set(cursors[1:-1])) == len(cursors) - 2
    # What the stream sent is what gRPC replays of the same run.
    replay = [
        m async for m in runs.WatchFlowRun(watch(run.id, after_cursor=0, include_task_runs=True))
    ]
    assert [m for m in opening + rest if kind(m) != "caught_up"] == [
        m for m in replay if kind(m) != "caught_up"
    ]


async def test_heartbeats_carry_the_last_cursor(edge, flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
    every_tenth = duration_pb2.Duration(nanos=100_000_000)
    async with edge.stream(
        "FlowRunService/WatchFlowRun", watch(run.id, heartbeat_interval=every_tenth)
    ) as stream:
        opening = await read_until(stream, "caught_up")
        beats = [await stream.read() for _ in range(3)]
    assert [kind(b) for b in beats] == ["heartbeat"] * 3
    assert all(b.cursor == opening[-1].cursor for b in beats)
    in_state = [b.heartbeat.time_in_state.ToTimedelta().total_seconds() for b in beats]
    assert in_state == sorted(in_state) and in_state[-1] > 0.2


async def test_a_deleted_run_ends_the_stream(edge, flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    async with edge.stream("FlowRunService/WatchFlowRun", watch(run.id)) as stream:
        await read_until(stream, "caught_up")
        await runs.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id=run.id))
        assert [describe(m) for m in await read_all(stream)] == ["end:REASON_RUN_DELETED"]


async def test_a_watch_resumed_from_its_cursor_gets_exactly_the_events_after_it(
    edge, flows, runs, logs
):
    """The client goes away in the middle of a live run and comes back with the cursor of the
    last event it saw, twice: together, the streams gave each event once, in order."""
    run = await make_run(runs, (await make_flow(flows)).id)
    seen: list[Any] = []
    async with edge.stream("FlowRunService/WatchFlowRun", watch(run.id)) as stream:
        seen += [m for m in await read_until(stream, "caught_up") if kind(m) != "caught_up"]
        await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
        await log(logs, run.id, "a", "b", "c")
        seen += [await stream.read() for _ in range(2)]  # Running, a: then the client is gone
    await log(logs, run.id, "d")
    cursor = seen[-1].cursor
    async with edge.stream(
        "FlowRunService/WatchFlowRun", watch(run.id, after_cursor=cursor)
    ) as stream:
        again = await read_until(stream, "caught_up")
        assert [describe(m) for m in again] == ["log:b", "log:c", "log:d", "caught_up"]
        assert all(m.cursor > cursor for m in again)
        seen += again[:-1]
        await log(logs, run.id, "e")
        seen.append(await stream.read())
    await propose(runs, run.id, ST.STATE_TYPE_COMPLETED)
    cursor = seen[-1].cursor
    async with edge.stream(
        "FlowRunService/WatchFlowRun", watch(run.id, after_cursor=cursor)
    ) as stream:
        last = await read_all(stream)
    assert [describe(m) for m in last] == ["flow:Completed", "caught_up", "end:REASON_RUN_FINISHED"]
    seen.append(last[0])
    # Exactly the run's events, each once, as gRPC replays them from the start.
    everything = [m async for m in runs.WatchFlowRun(watch(run.id, after_cursor=0))]
    assert seen == [m for m in everything if kind(m) not in ("caught_up", "end")]
    assert [describe(m) for m in seen] == [
        "flow:Pending",
        "flow:Running",
        "log:a",
        "log:b",
        "log:c",
        "log:d",
        "log:e",
        "flow:Completed",
    ]


async def test_watch_errors_carry_their_details(edge, flows, runs):
    missing = "01a23ce8-0b2b-76f5-a939-9c006abf8a8f"
    async with edge.stream("FlowRunService/WatchFlowRun", watch(missing)) as stream:
        with pytest.raises(EdgeError) as caught:
            await stream.read()
    error = caught.value
    assert (error.code, error.reason) == ("not_found", "RESOURCE_NOT_FOUND")
    resource = error.detail(error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("flow run", missing)
    too_slow = watch(missing, heartbeat_interval=duration_pb2.Duration(seconds=100_000))
    async with edge.stream("FlowRunService/WatchFlowRun", too_slow) as stream:
        with pytest.raises(EdgeError) as caught:
            await stream.read()
    assert caught.value.code == "invalid_argument"
    assert caught.value.fields == ["heartbeat_interval"]
    run = await make_run(runs, (await make_flow(flows)).id)
    future = watch(run.id, after_cursor=10**15)
    async with edge.stream("FlowRunService/WatchFlowRun", future) as stream:
        with pytest.raises(EdgeError) as caught:
            await stream.read()
    assert (caught.value.code, caught.value.reason) == ("out_of_range", "CURSOR_OUT_OF_RANGE")
    assert dict(caught.value.info.metadata)["cursor"] == str(10**15)


# --- the runs of a filter ----------------------------------------------------------------------


async def test_watch_flow_runs_with_a_filter(edge, flows, runs):
    """List the runs of one flow, then watch them from the list's cursor: no change is lost
    in between, and runs of other flows are left out."""
    flow, other = await make_flow(flows), await make_flow(flows)
    first = await make_run(runs, flow.id)
    only_flow = flow_criteria(flow.id)
    listed = await edge.call(
        "FlowRunService/ListFlowRuns", pb.ListFlowRunsRequest(filter=only_flow)
    )
    assert [r.id for r in listed.flow_runs] == [first.id] and listed.watch_cursor > 0
    second = await make_run(runs, flow.id)
    await propose(runs, first.id, ST.STATE_TYPE_RUNNING)
    request = watch_pb2.WatchFlowRunsRequest(
        filter=only_flow,
        after_cursor=listed.watch_cursor,
        heartbeat_interval=duration_pb2.Duration(nanos=200_000_000),
    )
    async with edge.stream("FlowRunService/WatchFlowRuns", request) as stream:
        replayed = await read_until(stream, "caught_up")
        assert [
            (m.flow_run_state.flow_run_id, m.flow_run_state.state.name) for m in replayed[:-1]
        ] == [
            (second.id, "Pending"),
            (first.id, "Running"),
        ]
        elsewhere = await make_run(runs, other.id)
        await propose(runs, elsewhere.id, ST.STATE_TYPE_RUNNING)
        await propose(runs, second.id, ST.STATE_TYPE_RUNNING)
        await propose(runs, first.id, ST.STATE_TYPE_COMPLETED)
        live = [await stream.read() for _ in range(2)]
        assert [(m.flow_run_state.flow_run_id, m.flow_run_state.state.name) for m in live] == [
            (second.id, "Running"),
            (first.id, "Completed"),
        ]
        # Then quiet: heartbeats with the last cursor.
        beat = await stream.read()
        assert kind(beat) == "heartbeat" and beat.cursor == live[-1].cursor
    cursors = [m.cursor for m in replayed + live]
    assert cursors == sorted(cursors)
    # Refused filters are refused as over gRPC, naming the field.
    bad = f.FlowRunCriteria(
        flow_runs=f.FlowRunFilter(id=f.StringFilter(any_of=f.StringList(values=["x"])))
    )
    async with edge.stream(
        "FlowRunService/WatchFlowRuns", watch_pb2.WatchFlowRunsRequest(filter=bad)
    ) as stream:
        with pytest.raises(EdgeError) as caught:
            await stream.read()
    assert caught.value.code == "invalid_argument"
    assert caught.value.fields == ["filter.flow_runs.id.any_of"]


# --- the wire: frames and headers --------------------------------------------------------------


async def test_streams_ask_proxies_not_to_buffer(server, flows, runs, http):
    """Each message goes out as it is made (a proxy that buffered would hold heartbeats back):
    the response says so to proxies, over Connect and gRPC-Web alike."""
    run = await make_run(runs, (await make_flow(flows)).id)
    url = base_url(server) + path_of("FlowRunService/WatchFlowRun")
    request = watch(run.id)
    async with http.stream(
        "POST",
        url,
        content=envelope(json.dumps({"flowRunId": run.id}).encode()),
        headers={"content-type": "application/connect+json"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/connect+json"
        for header, value in STREAM_HEADERS.items():
            assert response.headers[header] == value
        frames = Frames()
        messages: list[dict[str, Any]] = []
        async for chunk in response.aiter_raw():
            messages += [json.loads(payload) for _, payload in frames.feed(chunk)]
            if len(messages) >= 2:
                break
    # The JSON mapping: int64 cursors as strings, lowerCamelCase names, a oneof's one field.
    pending, caught_up = messages
    assert isinstance(pending["cursor"], str) and int(pending["cursor"]) > 0
    assert pending["flowRunState"]["flowRunId"] == run.id
    assert pending["flowRunState"]["state"]["type"] == "STATE_TYPE_PENDING"
    assert caught_up == {"cursor": pending["cursor"], "caughtUp": {}}

    # gRPC-Web by hand, as a browser's library sends it.
    await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
    await propose(runs, run.id, ST.STATE_TYPE_COMPLETED)
    response = await http.post(
        url,
        content=grpc_web_request(request),
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/grpc-web+proto"
    for header, value in STREAM_HEADERS.items():
        assert response.headers[header] == value
    answer = grpc_web_answer(response, response.content)
    assert answer.error is None  # grpc-status 0 in the trailers
    sent = [watch_pb2.WatchFlowRunResponse.FromString(m) for m in answer.messages]
    assert [describe(m) for m in sent] == ["flow:Completed", "caught_up", "end:REASON_RUN_FINISHED"]


async def test_a_stream_ends_with_connects_end_of_stream_frame(server, flows, runs, http):
    """A finished stream's last frame is the end-of-stream frame, {} when all went well and
    {"error": ...} with the error's details when not."""
    run = await make_run(runs, (await make_flow(flows)).id)
    await propose(runs, run.id, ST.STATE_TYPE_RUNNING)
    await propose(runs, run.id, ST.STATE_TYPE_COMPLETED)
    url = base_url(server) + path_of("FlowRunService/WatchFlowRun")
    for body, ending in (
        ({"flowRunId": run.id}, {}),
        ({"flowRunId": "nope"}, {"code": "invalid_argument"}),
    ):
        response = await http.post(
            url,
            content=envelope(json.dumps(body).encode()),
            headers={"content-type": "application/connect+json"},
        )
        assert response.status_code == 200
        frames = Frames().feed(response.content)
        flags, payload = frames[-1]
        assert flags == END_STREAM and all(flag == 0 for flag, _ in frames[:-1])
        end = json.loads(payload)
        if not ending:
            assert end == {} and len(frames) == 4  # Completed, caught_up, end, then this
        else:
            assert len(frames) == 1 and end["error"]["code"] == ending["code"]
            assert [d["type"] for d in end["error"]["details"]] == [
                "google.rpc.ErrorInfo",
                "google.rpc.BadRequest",
            ]


async def test_a_watch_ends_at_its_deadline(server, flows, runs, http):
    """connect-timeout-ms and grpc-timeout bound a stream as they do a unary call: a watch of
    a quiet run sends what there is, then ends with deadline_exceeded when its time is up."""
    run = await make_run(runs, (await make_flow(flows)).id)
    url = base_url(server) + path_of("FlowRunService/WatchFlowRun")
    started = asyncio.get_running_loop().time()
    response = await http.post(
        url,
        content=envelope(json.dumps({"flowRunId": run.id}).encode()),
        headers={"content-type": "application/connect+json", "connect-timeout-ms": "500"},
    )
    waited = asyncio.get_running_loop().time() - started
    frames = Frames().feed(response.content)
    sent = [json.loads(payload) for _, payload in frames]
    assert [sorted(message) for message in sent[:2]] == [
        ["cursor", "flowRunState"],
        ["caughtUp", "cursor"],
    ]
    assert frames[-1][0] == END_STREAM and sent[-1]["error"]["code"] == "deadline_exceeded"
    assert 0.45 < waited < 10, waited
    started = asyncio.get_running_loop().time()
    response = await http.post(
        url,
        content=grpc_web_request(watch(run.id)),
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "grpc-timeout": "500m",
        },
    )
    waited = asyncio.get_running_loop().time() - started
    answer = grpc_web_answer(response, response.content)
    assert len(answer.messages) == 2 and 0.45 < waited < 10, waited
    assert answer.error is not None and answer.error.code == "deadline_exceeded"


# --- streams and the server --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS)
async def test_shutdown_ends_http_streams_with_their_marker(server_factory, http, protocol):
    """As over gRPC: the marker says to reconnect with the last cursor, and the stream then
    ends UNAVAILABLE, which clients retry."""
    async with server_factory() as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
            flow = await make_flow(flow_service_pb2_grpc.FlowServiceStub(channel))
            run = await make_run(runs, flow.id)
        e = make_edge(protocol, base_url(running), http)
        async with e.stream("FlowRunService/WatchFlowRun", watch(run.id)) as stream:
            opening = await read_until(stream, "caught_up")
            stopping = asyncio.create_task(running.stop(grace=1))
            last = await stream.read()
            assert describe(last) == "end:REASON_SERVER_SHUTDOWN"
            assert last.cursor == opening[-1].cursor > 0
            with pytest.raises(EdgeError) as caught:
                await stream.read()
            assert caught.value.code == "unavailable"
            await stopping


async def test_the_watch_quota_counts_the_streams_of_both_edges(server_factory, http):
    """One client's streams are counted together, whichever edge they came by."""
    async with (
        server_factory(max_watch_streams_per_client=2) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        everything = watch_pb2.WatchFlowRunsRequest()
        over_grpc = runs.WatchFlowRuns(everything)
        assert kind(await over_grpc.read()) == "caught_up"
        json_edge = make_edge(CONNECT_JSON, base_url(running), http)
        web = make_edge(GRPC_WEB, base_url(running), http)
        async with json_edge.stream("FlowRunService/WatchFlowRuns", everything) as stream:
            assert kind(await stream.read()) == "caught_up"
            # A third, on either edge, is refused.
            for third in (json_edge, web):
                async with third.stream("FlowRunService/WatchFlowRuns", everything) as refused:
                    with pytest.raises(EdgeError) as caught:
                        await refused.read()
                assert (caught.value.code, caught.value.reason) == (
                    "resource_exhausted",
                    "WATCH_STREAMS_EXHAUSTED",
                )
                assert dict(caught.value.info.metadata) == {
                    "limit": "2",
                    "client": "peer 127.0.0.1",
                }
            details = await expect_error(
                runs.WatchFlowRuns(everything).read(), grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            assert details.reason == "WATCH_STREAMS_EXHAUSTED"
        # The HTTP stream's client went away: its place is free again, for either edge.
        for _ in range(100):
            if running.app.broadcaster.subscribers() == 1:
                break
            await asyncio.sleep(0.05)
        async with web.stream("FlowRunService/WatchFlowRuns", everything) as stream:
            assert kind(await stream.read()) == "caught_up"
        over_grpc.cancel()
