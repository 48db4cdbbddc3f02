"""The HTTP edge: every runwire.v1 method over Connect (JSON as curl sends it, and binary) and
gRPC-Web, answering as the gRPC edge does; errors and their details; tokens; deadlines; and
what the edge itself does (health, unknown paths, gRPC on the wrong port, CORS, TLS, limits,
large requests, metrics). Watch streams over HTTP are in test_http_watch.py."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import gzip
import importlib
import json
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uuid6
from connectrpc.protocol import ProtocolType
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pyqwest import Client as PyqwestClient
from pyqwest import HTTPTransport

from runwire.v1 import concurrency_limit_service_pb2 as cpb
from runwire.v1 import (
    deployment_pb2,
    flow_pb2,
    flow_run_pb2,
    log_pb2,
    orchestration_pb2,
    task_run_pb2,
)
from runwire.v1 import deployment_service_pb2 as dpb
from runwire.v1 import filters_pb2 as f
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import flow_service_pb2 as fpb
from runwire.v1 import log_service_pb2 as lpb
from runwire.v1 import server_service_pb2 as spb
from runwire.v1 import state_pb2 as ST
from runwire.v1 import task_run_service_pb2 as tpb
from runwire.v1 import watch_pb2 as wpb
from runwire_server.server import SERVICES, RunningServer, serving, start
from runwire_server.settings import ConfigurationError
from tests.certs import make_certificates
from tests.conftest import fresh_postgres_database, make_settings
from tests.helpers import expect_error, ts, unique
from tests.http_wire import (
    CONNECT_JSON,
    CONNECT_PROTO,
    GRPC_WEB,
    METHODS,
    ConnectHttpx,
    Edge,
    EdgeError,
    GeneratedClient,
    bearer,
    grpc_web_call,
    path_of,
    response_type,
    unbase64,
)
from tests.test_observability import calls, scrape, wait_until, write_lock_held
from tests.wire import CORRUPT

UNARY_PROTOCOLS = (CONNECT_JSON, CONNECT_PROTO, GRPC_WEB)
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ACCEPT = orchestration_pb2.SET_STATE_STATUS_ACCEPT
ABORT = orchestration_pb2.SET_STATE_STATUS_ABORT


def base_url(running: RunningServer, scheme: str = "http") -> str:
    assert running.http_port is not None
    return f"{scheme}://127.0.0.1:{running.http_port}"


def make_edge(protocol: str, url: str, http: httpx.AsyncClient) -> Edge:
    if protocol == GRPC_WEB:
        return GeneratedClient(url, ProtocolType.GRPC_WEB)
    return ConnectHttpx(url, http, binary=protocol == CONNECT_PROTO)


def http_status(edge: Edge, status: int) -> int | None:
    """The HTTP status a failed unary call has: Connect's for its code; gRPC-Web answers 200
    with the status in its trailers."""
    return None if edge.name == GRPC_WEB else status


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture(params=UNARY_PROTOCOLS)
def edge(request: pytest.FixtureRequest, server: RunningServer, http: httpx.AsyncClient) -> Edge:
    return make_edge(request.param, base_url(server), http)


class Grpc:
    """The same methods over gRPC, to compare answers: `await g("FlowService/GetFlow", r)`."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stubs: dict[str, Any] = {}
        for service in SERVICES:
            module = importlib.import_module(service.file.name[:-6].replace("/", ".") + "_pb2_grpc")
            self._stubs[service.name] = getattr(module, f"{service.name}Stub")(channel)

    def __call__(self, method: str, request: Any, **kw: Any) -> Any:
        service, name = method.split("/")
        return getattr(self._stubs[service], name)(request, **kw)

    async def status(self, method: str, request: Any) -> tuple[str, list[Any]]:
        """The message and details of the error a call fails with."""
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self(method, request)
        status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
        assert status is not None
        return status.message, list(status.details)


@pytest.fixture
def g(channel: grpc.aio.Channel) -> Grpc:
    return Grpc(channel)


def assert_same(over_http: Any, over_grpc: Any, what: str) -> None:
    """The two answers are equal; if not, the failure shows where they differ."""
    if over_http != over_grpc:
        diff = difflib.unified_diff(
            str(over_grpc).splitlines(), str(over_http).splitlines(), "gRPC", "HTTP", lineterm=""
        )
        pytest.fail(f"{what} answers differently over HTTP:\n" + "\n".join(diff))


AS_OF_NOW = ("estimated_run_time", "estimated_start_time_delta")


def without_clock(message: Any) -> Any:
    """A copy without the durations a run reports as of now (they grow while it is not
    finished)."""
    copy = type(message)()
    copy.CopyFrom(message)
    stack = [copy]
    while stack:
        item = stack.pop()
        for field, value in item.ListFields():
            if field.name in AS_OF_NOW:
                item.ClearField(field.name)
            elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
                stack.extend(value if field.is_repeated else [value])
    return copy


async def fails(call: Awaitable[Any], code: str) -> EdgeError:
    with pytest.raises(EdgeError) as caught:
        await call
    assert caught.value.code == code, caught.value
    return caught.value


async def read_until(stream: Any, last: str) -> list[Any]:
    out = []
    async with asyncio.timeout(30):
        async for message in stream:
            out.append(message)
            if message.WhichOneof("event") == last:
                break
    return out


def id_filter(value: str) -> f.StringFilter:
    return f.StringFilter(any_of=f.StringList(values=[value]))


# --- every method, over every protocol ---------------------------------------------------------


async def test_every_method_answers_as_over_grpc(edge: Edge, g: Grpc):
    """The server's own info, then a small world made and taken apart over one protocol: a
    flow, a deployment, a tag's concurrency limit, a flow run paused and resumed, a task run
    with a result, logs; read back over HTTP and over gRPC alike. Every method of every
    service must have answered."""
    e = edge

    async def same(method: str, request: Any, moving: bool = False) -> Any:
        """Call over HTTP, and over gRPC to compare; `moving`: the object is not finished,
        and what it reports as of the moment of the call differs between the two."""
        over_http = await e.call(method, request)
        over_grpc = await g(method, request)
        if moving:
            assert_same(without_clock(over_http), without_clock(over_grpc), method)
        else:
            assert_same(over_http, over_grpc, method)
        return over_http

    async def gone(method: str, request: Any) -> None:
        await expect_error(g(method, request), NOT_FOUND)

    # The server and its caller: no tokens, so anyone may write.
    info = await same("ServerService/GetServerInfo", spb.GetServerInfoRequest())
    assert info.server_version and not info.authentication_required
    assert info.caller == spb.Caller(role=spb.CALLER_ROLE_WRITE)

    # A flow.
    tag, name = unique("tag"), unique(f"{e.name}-flow")
    created = await e.call(
        "FlowService/CreateFlow",
        fpb.CreateFlowRequest(
            flow=flow_pb2.Flow(name=name, tags=[tag], labels={"edge": e.name}, project_name="p")
        ),
    )
    flow = created.flow
    assert created.created and flow.id and flow.name == name and dict(flow.labels)["edge"] == e.name
    assert (await same("FlowService/GetFlow", fpb.GetFlowRequest(flow_id=flow.id))).flow == flow
    by_name = await same("FlowService/GetFlowByName", fpb.GetFlowByNameRequest(name=name))
    assert by_name.flow == flow
    this_flow = f.FlowFilter(id=id_filter(flow.id))
    listed = await same("FlowService/ListFlows", fpb.ListFlowsRequest(flows=this_flow))
    assert list(listed.flows) == [flow]

    # A deployment of it, and a concurrency limit on a tag.
    deployment = (
        await e.call(
            "DeploymentService/CreateDeployment",
            dpb.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(
                    name=unique("deployment"),
                    flow_id=flow.id,
                    tags=[tag],
                    work_pool_name="pool",
                    concurrency_limit=3,
                )
            ),
        )
    ).deployment
    assert deployment.flow_id == flow.id and deployment.concurrency_limit == 3
    got = await same(
        "DeploymentService/GetDeployment", dpb.GetDeploymentRequest(deployment_id=deployment.id)
    )
    assert got.deployment == deployment
    deployments = await same(
        "DeploymentService/ListDeployments", dpb.ListDeploymentsRequest(flows=this_flow)
    )
    assert list(deployments.deployments) == [deployment]
    slot_tag = unique("slots")
    limit = await e.call(
        "ConcurrencyLimitService/CreateConcurrencyLimit",
        cpb.CreateConcurrencyLimitRequest(tag=slot_tag, concurrency_limit=2),
    )
    assert limit.created and limit.concurrency_limit.tag == slot_tag
    assert limit.concurrency_limit.concurrency_limit == 2

    # A flow run of the deployment.
    runs_of_flow = f.FlowRunCriteria(flows=this_flow)
    before = await same("FlowRunService/ListFlowRuns", pb.ListFlowRunsRequest(filter=runs_of_flow))
    assert list(before.flow_runs) == []
    parameters = struct_pb2.Struct()
    parameters.update({"rows": 3, "source": "s3://bucket/key", "nested": {"ok": True}})
    made = await e.call(
        "FlowRunService/CreateFlowRun",
        pb.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(
                flow_id=flow.id,
                deployment_id=deployment.id,
                tags=[tag],
                parameters=parameters,
                idempotency_key=unique("key"),
            )
        ),
    )
    run = made.flow_run
    assert made.created and run.state.type == ST.STATE_TYPE_PENDING
    assert run.parameters == parameters and run.deployment_id == deployment.id
    renamed = unique("renamed")
    updated = await e.call(
        "FlowRunService/UpdateFlowRun",
        pb.UpdateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(id=run.id, name=renamed, flow_version="ignored"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
    )
    assert updated.flow_run.name == renamed and updated.flow_run.flow_version == ""

    async def propose(state: ST.State) -> Any:
        answer = await e.call(
            "FlowRunService/SetFlowRunState",
            pb.SetFlowRunStateRequest(flow_run_id=run.id, state=state),
        )
        assert answer.result.status == ACCEPT and answer.result.state_written, answer
        return answer.result

    assert (await propose(ST.State(type=ST.STATE_TYPE_RUNNING))).state.name == "Running"

    # A task run that takes a slot of the tag's limit and finishes with a result.
    made_task = await e.call(
        "TaskRunService/CreateTaskRun",
        tpb.CreateTaskRunRequest(
            task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key="extract", tags=[slot_tag])
        ),
    )
    task = made_task.task_run
    assert made_task.created and task.map_index == -1 and task.state.name == "Pending"
    got_task = await same(
        "TaskRunService/GetTaskRun", tpb.GetTaskRunRequest(task_run_id=task.id), moving=True
    )
    assert without_clock(got_task.task_run) == without_clock(task)
    by_slug = await same(
        "TaskRunService/GetTaskRunBySlug",
        tpb.GetTaskRunBySlugRequest(flow_run_id=run.id, task_slug="extract"),
        moving=True,
    )
    assert without_clock(by_slug.task_run) == without_clock(task)
    retagged = await e.call(
        "TaskRunService/UpdateTaskRun",
        tpb.UpdateTaskRunRequest(
            task_run=task_run_pb2.TaskRun(id=task.id, tags=[slot_tag, "extra"]),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        ),
    )
    assert list(retagged.task_run.tags) == sorted([slot_tag, "extra"])

    async def task_state(state: ST.State) -> None:
        answer = await e.call(
            "TaskRunService/SetTaskRunState",
            tpb.SetTaskRunStateRequest(task_run_id=task.id, state=state),
        )
        assert answer.result.status == ACCEPT and answer.result.state_written, answer

    await task_state(ST.State(type=ST.STATE_TYPE_RUNNING))
    # Heartbeats renew the leases the two runs took on entering RUNNING.
    beat = await e.call(
        "TaskRunService/HeartbeatTaskRun",
        tpb.HeartbeatTaskRunRequest(
            task_run_id=task.id, lease_duration=duration_pb2.Duration(seconds=120)
        ),
    )
    assert beat.state.type == ST.STATE_TYPE_RUNNING and beat.HasField("lease_expire_time")
    flow_beat = await e.call(
        "FlowRunService/HeartbeatFlowRun",
        pb.HeartbeatFlowRunRequest(flow_run_id=run.id, task_run_ids=[task.id]),
    )
    assert flow_beat.state.type == ST.STATE_TYPE_RUNNING
    assert list(flow_beat.renewed_task_run_ids) == [task.id]
    held = await same(
        "ConcurrencyLimitService/GetConcurrencyLimit", cpb.GetConcurrencyLimitRequest(tag=slot_tag)
    )
    assert list(held.concurrency_limit.active_slots) == [task.id]
    limits = await all_limits(e.call)
    assert limits == await all_limits(g)
    assert [lim for lim in limits if lim.tag == slot_tag] == [held.concurrency_limit]
    result = ST.ResultReference(serializer="json", inline_value=b'{"rows": 3}')
    await task_state(ST.State(type=ST.STATE_TYPE_COMPLETED, result=result))
    states = await same(
        "TaskRunService/ListTaskRunStates", tpb.ListTaskRunStatesRequest(task_run_id=task.id)
    )
    assert [s.name for s in states.states] == ["Pending", "Running", "Completed"]
    got_result = await same(
        "TaskRunService/GetTaskRunResult", tpb.GetTaskRunResultRequest(task_run_id=task.id)
    )
    assert got_result.result == result and list(got_result.child_results) == []
    tasks_of_run = tpb.TaskRunCriteria(flow_runs=f.FlowRunFilter(id=id_filter(run.id)))
    counted = await same(
        "TaskRunService/CountTaskRuns", tpb.CountTaskRunsRequest(filter=tasks_of_run)
    )
    assert counted.count == 1
    task_list = await same(
        "TaskRunService/ListTaskRuns", tpb.ListTaskRunsRequest(filter=tasks_of_run)
    )
    assert [t.id for t in task_list.task_runs] == [task.id]
    assert task_list.task_runs[0].state.name == "Completed"

    # Logs of the task run.
    start = datetime.now(UTC).replace(microsecond=0)
    logs = [
        log_pb2.Log(
            flow_run_id=run.id,
            task_run_id=task.id,
            name="etl",
            level=20 + 10 * (i == 2),
            message=f"row {i} ✓",
            timestamp=ts(start + timedelta(seconds=i)),
        )
        for i in range(3)
    ]
    written = await e.call("LogService/CreateLogs", lpb.CreateLogsRequest(logs=logs))
    assert written.created_count == 3
    listed_logs = await same(
        "LogService/ListLogs",
        lpb.ListLogsRequest(filter=f.LogFilter(flow_run_id=id_filter(run.id))),
    )
    assert [(log.message, log.level, log.task_run_id) for log in listed_logs.logs] == [
        ("row 0 ✓", 20, task.id),
        ("row 1 ✓", 20, task.id),
        ("row 2 ✓", 30, task.id),
    ]

    # Paused and resumed, then completed.
    later = ts(datetime.now(UTC) + timedelta(hours=1))
    await propose(
        ST.State(
            type=ST.STATE_TYPE_PAUSED,
            state_details=ST.StateDetails(pause_key="review", pause_timeout=later),
        )
    )
    resumed = await e.call(
        "FlowRunService/ResumeFlowRun", pb.ResumeFlowRunRequest(flow_run_id=run.id)
    )
    assert resumed.result.status == ACCEPT and resumed.result.state.type == ST.STATE_TYPE_RUNNING
    graph = await same(
        "FlowRunService/GetFlowRunGraph", pb.GetFlowRunGraphRequest(flow_run_id=run.id)
    )
    assert [(n.id, n.state.name) for n in graph.nodes] == [(task.id, "Completed")]
    await propose(ST.State(type=ST.STATE_TYPE_COMPLETED, message="done"))
    flow_states = await same(
        "FlowRunService/ListFlowRunStates", pb.ListFlowRunStatesRequest(flow_run_id=run.id)
    )
    assert [s.name for s in flow_states.states] == [
        "Pending",
        "Running",
        "Paused",
        "Running",
        "Completed",
    ]
    finished = (
        await same("FlowRunService/GetFlowRun", pb.GetFlowRunRequest(flow_run_id=run.id))
    ).flow_run
    assert finished.name == renamed and finished.state.message == "done"
    assert finished.run_count == 1 and list(finished.empirical_policy.pause_keys) == ["review"]
    after = await same("FlowRunService/ListFlowRuns", pb.ListFlowRunsRequest(filter=runs_of_flow))
    assert list(after.flow_runs) == [finished] and after.watch_cursor > before.watch_cursor
    assert (
        await same("FlowRunService/CountFlowRuns", pb.CountFlowRunsRequest(filter=runs_of_flow))
    ).count == 1
    history = await same(
        "FlowRunService/GetFlowRunHistory",
        pb.GetFlowRunHistoryRequest(
            history_start=ts(start - timedelta(hours=1)),
            history_end=ts(start + timedelta(hours=1)),
            history_interval=duration_pb2.Duration(seconds=3600),
            filter=runs_of_flow,
        ),
    )
    assert [(s.state_name, s.count_runs) for i in history.intervals for s in i.states] == [
        ("Completed", 1)
    ]

    # Its events: the run's whole story, then the runs of the flow since the first list.
    whole = wpb.WatchFlowRunRequest(flow_run_id=run.id, after_cursor=0, include_task_runs=True)
    async with e.stream("FlowRunService/WatchFlowRun", whole) as stream:
        story = [message async for message in stream]
    assert story == [message async for message in g("FlowRunService/WatchFlowRun", whole)]
    assert [m.WhichOneof("event") for m in story[-2:]] == ["caught_up", "end"]
    assert story[-1].end.reason == wpb.StreamEnd.REASON_RUN_FINISHED
    assert sum(m.WhichOneof("event") == "log" for m in story) == 3
    since = wpb.WatchFlowRunsRequest(filter=runs_of_flow, after_cursor=before.watch_cursor)
    async with e.stream("FlowRunService/WatchFlowRuns", since) as stream:
        changes = await read_until(stream, "caught_up")
    grpc_stream = g("FlowRunService/WatchFlowRuns", since)
    assert changes == await read_until(grpc_stream, "caught_up")
    grpc_stream.cancel()
    assert [m.flow_run_state.state.name for m in changes[:-1]] == [
        "Pending",
        "Running",
        "Paused",
        "Running",
        "Completed",
    ]

    # A task run reported with its states once the flow run has finished: the rules refuse
    # RUNNING, and the report says so; sent again, it is answered with what was made.
    reported_id = str(uuid6.uuid7())
    report = tpb.ReportTaskRunsRequest(
        reports=[
            tpb.TaskRunReport(
                task_run=task_run_pb2.TaskRun(id=reported_id, flow_run_id=run.id, task_key="late"),
                states=[ST.State(type=ST.STATE_TYPE_RUNNING)],
            )
        ]
    )
    (first,) = (await e.call("TaskRunService/ReportTaskRuns", report)).results
    assert first.task_run_id == reported_id and first.created and first.accepted_count == 0
    assert first.result.status == ABORT and "enclosing flow must be running" in (
        first.result.details.reason
    )
    (again,) = (await e.call("TaskRunService/ReportTaskRuns", report)).results
    assert not again.created and again.result.state.name == "Pending"

    # Taken apart again.
    await e.call("TaskRunService/DeleteTaskRun", tpb.DeleteTaskRunRequest(task_run_id=task.id))
    await gone("TaskRunService/GetTaskRun", tpb.GetTaskRunRequest(task_run_id=task.id))
    await e.call("FlowRunService/DeleteFlowRun", pb.DeleteFlowRunRequest(flow_run_id=run.id))
    await gone("FlowRunService/GetFlowRun", pb.GetFlowRunRequest(flow_run_id=run.id))
    await e.call(
        "DeploymentService/DeleteDeployment",
        dpb.DeleteDeploymentRequest(deployment_id=deployment.id),
    )
    await gone(
        "DeploymentService/GetDeployment", dpb.GetDeploymentRequest(deployment_id=deployment.id)
    )
    await e.call(
        "ConcurrencyLimitService/DeleteConcurrencyLimit",
        cpb.DeleteConcurrencyLimitRequest(tag=slot_tag),
    )
    await gone(
        "ConcurrencyLimitService/GetConcurrencyLimit", cpb.GetConcurrencyLimitRequest(tag=slot_tag)
    )
    await e.call("FlowService/DeleteFlow", fpb.DeleteFlowRequest(flow_id=flow.id))
    await gone("FlowService/GetFlow", fpb.GetFlowRequest(flow_id=flow.id))

    missing = sorted(set(METHODS) - e.called)
    assert not missing, f"methods this test does not call over {e.name}: {missing}"


async def all_limits(call: Any) -> list[Any]:
    """Every concurrency limit, page by page."""
    limits, token = [], ""
    while True:
        page = await call(
            "ConcurrencyLimitService/ListConcurrencyLimits",
            cpb.ListConcurrencyLimitsRequest(page_token=token),
        )
        limits += list(page.concurrency_limits)
        token = page.next_page_token
        if not token:
            return limits


async def test_json_as_curl_writes_it(server: RunningServer, http: httpx.AsyncClient, g: Grpc):
    """Hand-written JSON: the proto's own field names or lowerCamelCase, enums by name, fields
    this server does not know (a newer client's) ignored; answers in protobuf's JSON mapping."""
    url = base_url(server)

    async def post(method: str, body: dict[str, Any]) -> Any:
        response = await http.post(url + path_of(method), json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()

    name = unique("curl")
    flow = (await post("FlowService/CreateFlow", {"flow": {"name": name, "fromTheFuture": 1}}))[
        "flow"
    ]
    assert sorted(flow) == ["created", "id", "name", "updated"]  # empty fields are left out
    assert flow["created"].endswith("Z") and datetime.fromisoformat(flow["created"])
    made = await post(
        "FlowRunService/CreateFlowRun",
        {
            "flow_run": {
                "flow_id": flow["id"],
                "tags": ["curl"],
                "parameters": {"rows": 3, "names": ["a", "b"], "deep": {"ok": True}},
                "state": {"type": "STATE_TYPE_SCHEDULED"},
            }
        },
    )
    run = made["flowRun"]
    assert made["created"] is True
    assert run["state"]["type"] == "STATE_TYPE_SCHEDULED" and run["state"]["name"] == "Scheduled"
    assert run["parameters"] == {"rows": 3, "names": ["a", "b"], "deep": {"ok": True}}
    listed = await post(
        "FlowRunService/ListFlowRuns",
        {
            "filter": {
                "flows": {"name": {"anyOf": {"values": [name]}}},
                "flowRuns": {"state": {"type": {"anyOf": {"values": ["STATE_TYPE_SCHEDULED"]}}}},
            },
            "sort": "FLOW_RUN_SORT_ID_ASC",
        },
    )
    assert [r["id"] for r in listed["flowRuns"]] == [run["id"]]
    assert isinstance(listed["watchCursor"], str) and int(listed["watchCursor"]) > 0  # int64
    counted = await post(
        "FlowRunService/CountFlowRuns",
        {"filter": {"flows": {"name": {"anyOf": {"values": [name]}}}}},
    )
    assert counted == {"count": "1"}
    # What JSON gave is what gRPC reads.
    over_grpc = await g("FlowRunService/GetFlowRun", pb.GetFlowRunRequest(flow_run_id=run["id"]))
    assert over_grpc.flow_run.parameters["names"] == ["a", "b"]
    assert list(over_grpc.flow_run.tags) == ["curl"]


# --- errors and their details ------------------------------------------------------------------


async def test_not_found_names_the_resource(edge: Edge, g: Grpc):
    name = unique("missing")
    request = fpb.GetFlowByNameRequest(name=name)
    error = await fails(edge.call("FlowService/GetFlowByName", request), "not_found")
    assert error.http_status == http_status(edge, 404)
    assert error.info.reason == "RESOURCE_NOT_FOUND" and error.info.domain == "runwire.dev"
    assert dict(error.info.metadata) == {"resourceType": "flow", "resourceName": name}
    resource = error.detail(error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("flow", name)
    # The same message and details as over gRPC.
    assert (error.message, error.details) == await g.status("FlowService/GetFlowByName", request)


async def test_invalid_arguments_name_the_field(edge: Edge, g: Grpc):
    request = fpb.GetFlowRequest(flow_id="not-a-uuid")
    error = await fails(edge.call("FlowService/GetFlow", request), "invalid_argument")
    assert error.http_status == http_status(edge, 400)
    assert error.reason == "INVALID_FIELD" and dict(error.info.metadata) == {"field": "flow_id"}
    bad = error.detail(error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("flow_id", "'not-a-uuid' is not a valid UUID")
    ]
    assert (error.message, error.details) == await g.status("FlowService/GetFlow", request)


async def test_an_enum_number_no_version_defines_is_refused(edge: Edge, g: Grpc):
    criteria = f.FlowRunCriteria(flow_runs=f.FlowRunFilter(operator=9))  # type: ignore[arg-type]
    request = pb.ListFlowRunsRequest(filter=criteria)
    error = await fails(edge.call("FlowRunService/ListFlowRuns", request), "invalid_argument")
    assert error.fields == ["filter.flow_runs.operator"]
    assert "9 is not a value of runwire.v1.FilterOperator" in error.message
    assert (error.message, error.details) == await g.status("FlowRunService/ListFlowRuns", request)
    # A write with one is refused whole: nothing is stored.
    flow = (
        await g("FlowService/CreateFlow", fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=unique())))
    ).flow
    run = (
        await g(
            "FlowRunService/CreateFlowRun",
            pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id)),
        )
    ).flow_run
    task = task_run_pb2.TaskRun(flow_run_id=run.id, task_key="t")
    task.task_inputs["x"].inputs.add(input_type=77)  # type: ignore[arg-type]
    error = await fails(
        edge.call("TaskRunService/CreateTaskRun", tpb.CreateTaskRunRequest(task_run=task)),
        "invalid_argument",
    )
    assert error.fields == ["task_run.task_inputs['x'].inputs[0].input_type"]
    of_run = tpb.TaskRunCriteria(flow_runs=f.FlowRunFilter(id=id_filter(run.id)))
    counted = await g("TaskRunService/CountTaskRuns", tpb.CountTaskRunsRequest(filter=of_run))
    assert counted.count == 0


async def test_a_failed_precondition_says_which(edge: Edge, g: Grpc):
    flow = (
        await g("FlowService/CreateFlow", fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=unique())))
    ).flow
    run = (
        await g(
            "FlowRunService/CreateFlowRun",
            pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id)),
        )
    ).flow_run
    task = (
        await g(
            "TaskRunService/CreateTaskRun",
            tpb.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key="t")
            ),
        )
    ).task_run
    request = tpb.GetTaskRunResultRequest(task_run_id=task.id)
    error = await fails(
        edge.call("TaskRunService/GetTaskRunResult", request), "failed_precondition"
    )
    assert error.http_status == http_status(edge, 400)
    assert error.reason == "TASK_RUN_NOT_FINISHED"
    assert dict(error.info.metadata) == {"taskRunId": task.id}
    assert (error.message, error.details) == await g.status(
        "TaskRunService/GetTaskRunResult", request
    )


async def test_a_json_error_is_connects_error_body(server: RunningServer, http: httpx.AsyncClient):
    """What curl shows: HTTP 400 and {"code", "message", "details": [{"type", "value"}]}, each
    value a google.rpc message in unpadded base64."""
    response = await http.post(
        base_url(server) + path_of("FlowService/GetFlow"), json={"flowId": "not-a-uuid"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == "invalid_argument"
    assert body["message"] == "flow_id: 'not-a-uuid' is not a valid UUID"
    assert [d["type"] for d in body["details"]] == ["google.rpc.ErrorInfo", "google.rpc.BadRequest"]
    assert all(not d["value"].endswith("=") for d in body["details"])
    info = error_details_pb2.ErrorInfo.FromString(unbase64(body["details"][0]["value"]))
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INVALID_FIELD",
        "runwire.dev",
        {"field": "flow_id"},
    )
    bad = error_details_pb2.BadRequest.FromString(unbase64(body["details"][1]["value"]))
    assert [v.field for v in bad.field_violations] == ["flow_id"]


async def test_requests_that_do_not_decode_are_refused(
    server: RunningServer, http: httpx.AsyncClient
):
    malformed = [
        ("FlowService/GetFlow", b'{"flowId": ', "Failed to load JSON"),
        ("FlowService/GetFlow", b"[1, 2]", "GetFlowRequest"),
        ("FlowService/GetFlow", b'{"flowId": 5}', "flowId"),  # the parser names the field
        ("FlowService/GetFlow", b'{"flowId": "\xff"}', "byte 12 is not UTF-8"),
        # JSON of more than 16 KiB is parsed by a decoding worker, which refuses it alike.
        ("LogService/CreateLogs", b'{"logs": [' + b"{}," * 9000 + b"]}", "Failed to load JSON"),
        ("LogService/CreateLogs", b'{"logs": "' + b"\xff" * 20_000 + b'"}', "byte 10 is not"),
    ]
    for method, body, why in malformed:
        response = await http.post(
            base_url(server) + path_of(method),
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, body[:20]
        error = EdgeError.from_json(response.json(), response.status_code)
        assert (error.code, error.reason) == ("invalid_argument", "REQUEST_UNDECODABLE")
        kind = response_type(method).__name__.replace("Response", "Request")
        assert error.message.startswith(f"the request is not a valid runwire.v1.{kind}: ")
        assert why in error.message, error.message
    url = base_url(server) + path_of("FlowService/GetFlow")
    for corrupt in CORRUPT:
        response = await http.post(
            url, content=corrupt, headers={"content-type": "application/proto"}
        )
        assert response.status_code == 400, corrupt
        error = EdgeError.from_json(response.json(), response.status_code)
        assert error.reason == "REQUEST_UNDECODABLE", corrupt
        answer = await grpc_web_call(http, base_url(server), "FlowService/GetFlow", _raw(corrupt))
        assert answer.error is not None and answer.error.code == "invalid_argument"
        assert answer.error.reason == "REQUEST_UNDECODABLE"


class _raw:
    """Bytes sent as they are where a request message is expected."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def SerializeToString(self) -> bytes:
        return self._data


# --- tokens ------------------------------------------------------------------------------------

READ, WRITE = "rwt_http_read_token", "rwt_http_write_token"


@pytest.fixture(scope="module")
async def guarded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    """A server that requires tokens: READ may read and watch, WRITE may do anything."""
    db = tmp_path_factory.mktemp("guarded-http") / "runwire.db"
    async with serving(make_settings(db, tokens=f"read:{READ},write:{WRITE}")) as running:
        yield running


@pytest.mark.parametrize("protocol", UNARY_PROTOCOLS)
async def test_without_a_token_calls_are_unauthenticated(
    guarded: RunningServer, http: httpx.AsyncClient, protocol: str
):
    e = make_edge(protocol, base_url(guarded), http)
    request = fpb.ListFlowsRequest()
    missing = await fails(e.call("FlowService/ListFlows", request), "unauthenticated")
    assert missing.http_status == http_status(e, 401)
    assert missing.reason == "TOKEN_MISSING" and missing.info.domain == "runwire.dev"
    info = spb.GetServerInfoRequest()
    missing_info = await fails(e.call("ServerService/GetServerInfo", info), "unauthenticated")
    assert missing_info.http_status == http_status(e, 401)
    assert missing_info.reason == "TOKEN_MISSING"
    wrong = await fails(
        e.call("FlowService/ListFlows", request, bearer("rwt_not_a_token")), "unauthenticated"
    )
    assert wrong.reason == "TOKEN_INVALID"
    async with e.stream("FlowRunService/WatchFlowRuns", wpb.WatchFlowRunsRequest()) as stream:
        refused = await fails(stream.read(), "unauthenticated")
    assert refused.reason == "TOKEN_MISSING"


@pytest.mark.parametrize("protocol", UNARY_PROTOCOLS)
async def test_a_read_token_reads_and_watches_and_may_not_write(
    guarded: RunningServer, http: httpx.AsyncClient, protocol: str
):
    e = make_edge(protocol, base_url(guarded), http)
    read, write = bearer(READ), bearer(WRITE)
    # What a page asks first, to hide the actions its token may not take.
    info = spb.GetServerInfoRequest()
    as_reader = await e.call("ServerService/GetServerInfo", info, read)
    assert as_reader.authentication_required
    assert as_reader.caller == spb.Caller(name="env-1", role=spb.CALLER_ROLE_READ)
    as_writer = await e.call("ServerService/GetServerInfo", info, write)
    assert as_writer.caller == spb.Caller(name="env-2", role=spb.CALLER_ROLE_WRITE)
    name = unique("guarded")
    create = fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=name))
    denied = await fails(e.call("FlowService/CreateFlow", create, read), "permission_denied")
    assert denied.http_status == http_status(e, 403)
    assert denied.reason == "ROLE_NOT_ALLOWED"
    assert dict(denied.info.metadata) == {
        "method": "runwire.v1.FlowService/CreateFlow",
        "role": "read",
    }
    # The refused create wrote nothing; the write token's does.
    await fails(
        e.call("FlowService/GetFlowByName", fpb.GetFlowByNameRequest(name=name), read), "not_found"
    )
    flow = (await e.call("FlowService/CreateFlow", create, write)).flow
    got = await e.call("FlowService/GetFlow", fpb.GetFlowRequest(flow_id=flow.id), read)
    assert got.flow == flow
    run = (
        await e.call(
            "FlowRunService/CreateFlowRun",
            pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id)),
            write,
        )
    ).flow_run
    await fails(
        e.call("FlowRunService/DeleteFlowRun", pb.DeleteFlowRunRequest(flow_run_id=run.id), read),
        "permission_denied",
    )
    watch = wpb.WatchFlowRunRequest(flow_run_id=run.id)
    async with e.stream("FlowRunService/WatchFlowRun", watch, read) as stream:
        opening = await read_until(stream, "caught_up")
    assert [m.WhichOneof("event") for m in opening] == ["flow_run_state", "caught_up"]
    assert opening[0].flow_run_state.state.name == "Pending"
    runs_of_flow = wpb.WatchFlowRunsRequest(
        filter=f.FlowRunCriteria(flows=f.FlowFilter(id=id_filter(flow.id)))
    )
    async with e.stream("FlowRunService/WatchFlowRuns", runs_of_flow, read) as stream:
        assert (await stream.read()).WhichOneof("event") == "caught_up"


# --- deadlines ---------------------------------------------------------------------------------


async def test_a_deadline_stops_the_calls_work(
    server_factory: Any, database_overrides: dict[str, Any], http: httpx.AsyncClient
):
    """A create that cannot finish in time (another transaction holds the lock it needs) ends
    at its deadline, Connect's connect-timeout-ms or gRPC-Web's grpc-timeout, as the server
    answers it (these clients set no deadline of their own), and writes nothing."""
    async with (
        server_factory(metrics_address="127.0.0.1:0", **database_overrides) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        g, url = Grpc(channel), base_url(running)
        over_connect, over_grpc_web = unique("late-connect"), unique("late-grpc-web")
        with write_lock_held(running):
            started = time.monotonic()
            response = await http.post(
                url + path_of("FlowService/CreateFlow"),
                json={"flow": {"name": over_connect}},
                headers={"connect-timeout-ms": "1000"},
            )
            waited = time.monotonic() - started
            assert response.status_code == 504
            assert response.json()["code"] == "deadline_exceeded"
            assert 0.9 < waited < 10, waited
            started = time.monotonic()
            answer = await grpc_web_call(
                http,
                url,
                "FlowService/CreateFlow",
                fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=over_grpc_web)),
                headers={"grpc-timeout": "1000m"},
            )
            waited = time.monotonic() - started
            assert answer.error is not None and answer.error.code == "deadline_exceeded"
            assert answer.messages == [] and 0.9 < waited < 10, waited
            # Give a write that was not stopped every chance to land once the lock is free.
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.5)
        for name in (over_connect, over_grpc_web):
            await expect_error(
                g("FlowService/GetFlowByName", fpb.GetFlowByNameRequest(name=name)), NOT_FOUND
            )
        metrics = await asyncio.to_thread(scrape, running.metrics_port)
        assert calls(metrics, "runwire.v1.FlowService/CreateFlow", "DEADLINE_EXCEEDED") == 2
        # The server is fine afterwards, and a deadline long enough is no trouble.
        response = await http.post(
            url + path_of("FlowService/CreateFlow"),
            json={"flow": {"name": over_connect}},
            headers={"connect-timeout-ms": "10000"},
        )
        assert response.status_code == 200 and response.json()["created"] is True


async def test_a_draining_server_finishes_http_calls_in_flight_and_refuses_new_ones(
    http: httpx.AsyncClient, tmp_path: Path
):
    """While the server stops, /healthz says so (load balancers stop sending), new calls are
    refused with UNAVAILABLE and a RetryInfo, and a call already in flight is answered.
    PostgreSQL only: a call is held in flight by a lock another transaction holds, and on
    SQLite such a lock holds the whole server (its writes run on the event loop)."""
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    with fresh_postgres_database(base) as database_url:
        running = await start(make_settings(tmp_path / "unused.db", database_url=database_url))
        stopping: asyncio.Task[None] | None = None
        try:
            url, name = base_url(running), unique("in-flight")
            with write_lock_held(running):
                in_flight = asyncio.create_task(
                    http.post(
                        url + path_of("FlowService/CreateFlow"), json={"flow": {"name": name}}
                    )
                )
                await wait_until(lambda: running.policy.in_flight == 1, "the call is in flight")
                stopping = asyncio.create_task(running.stop(grace=5))
                await wait_until(lambda: running.policy.draining, "the server drains")
                health = await http.get(url + "/healthz")
                assert health.status_code == 503
                refused = await http.post(url + path_of("FlowService/ListFlows"), json={})
                assert refused.status_code == 503
                error = EdgeError.from_json(refused.json(), refused.status_code)
                assert (error.code, error.reason) == ("unavailable", "SERVER_SHUTTING_DOWN")
                retry = error.detail(error_details_pb2.RetryInfo)
                assert retry.retry_delay.ToTimedelta().total_seconds() >= 1
                assert not in_flight.done()
            answered = await in_flight
            assert answered.status_code == 200 and answered.json()["flow"]["name"] == name
            await stopping
        finally:
            if stopping is None:
                await running.stop()


# --- the edge itself ---------------------------------------------------------------------------


async def test_health_unknown_paths_and_grpc_on_the_wrong_port(
    server: RunningServer, http: httpx.AsyncClient
):
    url = base_url(server)
    health = await http.get(url + "/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "serving"})
    assert (await http.head(url + "/healthz")).status_code == 200
    # Unknown paths, a method a service does not have among them, are named in JSON.
    for path in ("/", "/nope", "/runwire.v2.FlowService/GetFlow", "/runwire.v1.FlowService/GetFlw"):
        unknown = await http.post(url + path, json={})
        assert unknown.status_code == 404, path
        assert unknown.headers["content-type"] == "application/json"
        assert unknown.json()["code"] == "unimplemented"
        assert repr(path) in unknown.json()["message"]
        assert "/runwire.v1.<Service>/<Method>" in unknown.json()["message"]
    # gRPC itself (HTTP/2 with application/grpc) is served on the gRPC port, which is named.
    grpc_here = await http.post(
        url + path_of("FlowService/ListFlows"),
        content=b"\x00\x00\x00\x00\x00",
        headers={"content-type": "application/grpc", "te": "trailers"},
    )
    assert grpc_here.status_code == 415
    assert f"127.0.0.1:{server.port}" in grpc_here.json()["message"]


PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization,connect-protocol-version,content-type",
}


async def test_cors_is_off_unless_origins_are_allowed(
    server: RunningServer, server_factory: Any, http: httpx.AsyncClient
):
    dash, other = "https://dash.example", "https://elsewhere.example"
    path = path_of("FlowService/ListFlows")
    call = {"content-type": "application/json", "connect-protocol-version": "1"}
    # By default no origin is allowed: browsers keep other pages out.
    url = base_url(server)
    preflight = await http.options(url + path, headers={"origin": dash, **PREFLIGHT})
    assert "access-control-allow-origin" not in preflight.headers
    answer = await http.post(url + path, json={}, headers={"origin": dash, **call})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers

    async with server_factory(cors_allowed_origins=dash) as running:
        url = base_url(running)
        preflight = await http.options(url + path, headers={"origin": dash, **PREFLIGHT})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == dash
        assert "POST" in preflight.headers["access-control-allow-methods"]
        allowed = {
            h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
        }
        assert {
            "authorization",
            "connect-protocol-version",
            "content-type",
            "connect-timeout-ms",
            "grpc-timeout",
            "x-grpc-web",
            "x-user-agent",
        } <= allowed
        answer = await http.post(url + path, json={}, headers={"origin": dash, **call})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == dash
        exposed = answer.headers["access-control-expose-headers"].lower()
        assert "grpc-status" in exposed and "grpc-status-details-bin" in exposed
        # Another origin is not allowed.
        refused = await http.options(url + path, headers={"origin": other, **PREFLIGHT})
        assert "access-control-allow-origin" not in refused.headers
        assert refused.status_code == 400
        answer = await http.post(url + path, json={}, headers={"origin": other, **call})
        assert "access-control-allow-origin" not in answer.headers


async def test_a_page_of_another_origin_cannot_call_without_asking(
    server: RunningServer, channel: grpc.aio.Channel, http: httpx.AsyncClient
):
    """What a browser sends for any page without a preflight (a GET, a form's POST) calls no
    method: without tokens, a page could otherwise change a server on the user's machine."""
    name = unique("forged")
    message = json.dumps({"flow": {"name": name}})
    url = base_url(server) + path_of("FlowService/CreateFlow")
    forged = await http.get(url, params={"encoding": "json", "message": message})
    assert forged.status_code == 405
    for form in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        forged = await http.post(url, content=message, headers={"content-type": form})
        assert forged.status_code == 415, form
    await expect_error(
        Grpc(channel)("FlowService/GetFlowByName", fpb.GetFlowByNameRequest(name=name)), NOT_FOUND
    )


async def test_https_with_the_servers_certificate(
    server_factory: Any, tmp_path: Any, http: httpx.AsyncClient
):
    certificates = make_certificates(tmp_path)
    async with server_factory(
        tls_cert_file=str(certificates.server.cert), tls_key_file=str(certificates.server.key)
    ) as running:
        url = base_url(running, "https")
        trusting = ssl.create_default_context(cafile=str(certificates.ca))
        async with httpx.AsyncClient(verify=trusting) as client:
            flow = await ConnectHttpx(url, client, binary=False).call(
                "FlowService/CreateFlow",
                fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=unique("tls"))),
            )
            assert flow.created
            health = await client.get(url + "/healthz")
            assert health.status_code == 200
        async with HTTPTransport(tls_ca_cert=certificates.ca.read_bytes()) as transport:
            web = GeneratedClient(url, ProtocolType.GRPC_WEB, http_client=PyqwestClient(transport))
            got = await web.call("FlowService/GetFlow", fpb.GetFlowRequest(flow_id=flow.flow.id))
            assert got.flow == flow.flow
        # A client that does not trust the certificate's CA refuses the server.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(url + "/healthz")
        # And the port speaks no plain HTTP.
        with pytest.raises(httpx.HTTPError):
            await http.get(base_url(running) + "/healthz")


# The smallest message limit the server takes with objects of at most 32 KiB.
SMALL_LIMITS = {
    "max_message_bytes": 128 * 1024,
    "max_object_bytes": 32 * 1024,
    "max_inline_result_bytes": 32 * 1024,
}


@pytest.mark.parametrize("protocol", UNARY_PROTOCOLS)
async def test_a_request_larger_than_the_message_limit_is_refused(
    server_factory: Any, http: httpx.AsyncClient, protocol: str
):
    async with (
        server_factory(**SMALL_LIMITS) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        g = Grpc(channel)
        e = make_edge(protocol, base_url(running), http)
        flow = (
            await g("FlowService/CreateFlow", fpb.CreateFlowRequest(flow=flow_pb2.Flow(name="f")))
        ).flow
        run = (
            await g(
                "FlowRunService/CreateFlowRun",
                pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id)),
            )
        ).flow_run

        def logs(count: int) -> lpb.CreateLogsRequest:
            return lpb.CreateLogsRequest(
                logs=[
                    log_pb2.Log(flow_run_id=run.id, level=20, message="x" * 1000)
                    for _ in range(count)
                ]
            )

        assert logs(200).ByteSize() > SMALL_LIMITS["max_message_bytes"]
        error = await fails(e.call("LogService/CreateLogs", logs(200)), "resource_exhausted")
        assert error.http_status == http_status(e, 429)
        assert str(SMALL_LIMITS["max_message_bytes"]) in error.message
        listed = await g(
            "LogService/ListLogs",
            lpb.ListLogsRequest(filter=f.LogFilter(flow_run_id=id_filter(run.id))),
        )
        assert list(listed.logs) == []
        # Within the limit, the same logs are written.
        assert (await e.call("LogService/CreateLogs", logs(100))).created_count == 100


def names(count: int) -> f.FlowRunCriteria:
    return f.FlowRunCriteria(
        flow_runs=f.FlowRunFilter(
            name=f.StringFilter(
                any_of=f.StringList(values=[f"run-name-{i:05}" for i in range(count)])
            )
        )
    )


async def test_large_json_requests_are_parsed_by_a_decoding_worker(
    server_factory: Any, http: httpx.AsyncClient
):
    """JSON over 16 KiB is parsed by a worker process, not on the event loop: it works as a
    small request does, and is refused as one is."""
    async with (
        server_factory() as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        assert running.decoder is not None and running.decoder.processes() == []
        g = Grpc(channel)
        e = ConnectHttpx(base_url(running), http, binary=False)
        flow = (
            await g("FlowService/CreateFlow", fpb.CreateFlowRequest(flow=flow_pb2.Flow(name="f")))
        ).flow
        run = (
            await g(
                "FlowRunService/CreateFlowRun",
                pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id)),
            )
        ).flow_run
        request = lpb.CreateLogsRequest(
            logs=[
                log_pb2.Log(flow_run_id=run.id, level=20, message=f"line {i} ü") for i in range(500)
            ]
        )
        assert len(e.encode(request)) > 16 * 1024
        assert (await e.call("LogService/CreateLogs", request)).created_count == 500
        assert len(running.decoder.processes()) == 1  # the worker started for it
        listed = await g(
            "LogService/ListLogs",
            lpb.ListLogsRequest(filter=f.LogFilter(flow_run_id=id_filter(run.id)), page_size=200),
        )
        assert [log.message for log in listed.logs] == [f"line {i} ü" for i in range(200)]
        # A filter of 1,000 names (the most one list may hold) is fine...
        at_most = pb.ListFlowRunsRequest(filter=names(1000))
        assert len(e.encode(at_most)) > 16 * 1024
        assert list((await e.call("FlowRunService/ListFlowRuns", at_most)).flow_runs) == []
        # ...and 1,001 are refused, naming the list.
        error = await fails(
            e.call("FlowRunService/ListFlowRuns", pb.ListFlowRunsRequest(filter=names(1001))),
            "invalid_argument",
        )
        assert error.http_status == 400
        assert error.fields == ["filter.flow_runs.name.any_of.values"]
        assert "1001" in error.message and "1000" in error.message


async def test_metrics_count_http_calls_by_method_and_code(
    server_factory: Any, http: httpx.AsyncClient
):
    async with (
        server_factory(metrics_address="127.0.0.1:0") as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        url = base_url(running)
        json_edge, binary_edge = (ConnectHttpx(url, http, binary=b) for b in (False, True))
        web = GeneratedClient(url, ProtocolType.GRPC_WEB)
        await json_edge.call(
            "FlowService/CreateFlow", fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=unique()))
        )
        await Grpc(channel)(
            "FlowService/CreateFlow", fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=unique()))
        )
        await web.call(
            "FlowService/CreateFlow", fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=unique()))
        )
        await fails(
            web.call("FlowService/GetFlowByName", fpb.GetFlowByNameRequest(name=unique())),
            "not_found",
        )
        await fails(
            binary_edge.call("FlowService/GetFlow", fpb.GetFlowRequest(flow_id="x")),
            "invalid_argument",
        )
        async with json_edge.stream(
            "FlowRunService/WatchFlowRuns", wpb.WatchFlowRunsRequest()
        ) as stream:
            assert (await stream.read()).WhichOneof("event") == "caught_up"
            opened = await asyncio.to_thread(scrape, running.metrics_port)
            assert opened[("runwire_watch_streams_open", ())] == 1
        # The client went away: the stream ends as cancelled, and gives back its place.
        await wait_until(
            lambda: running.app.broadcaster.subscribers() == 0, "the subscription is released"
        )
        metrics = await asyncio.to_thread(scrape, running.metrics_port)
        assert calls(metrics, "runwire.v1.FlowService/CreateFlow", "OK") == 3  # both edges
        assert calls(metrics, "runwire.v1.FlowService/GetFlowByName", "NOT_FOUND") == 1
        assert calls(metrics, "runwire.v1.FlowService/GetFlow", "INVALID_ARGUMENT") == 1
        assert calls(metrics, "runwire.v1.FlowRunService/WatchFlowRuns", "CANCELLED") == 1
        assert metrics[("runwire_watch_streams_open", ())] == 0
        latency = (
            "runwire_rpc_duration_seconds_count",
            (("method", "CreateFlow"), ("service", "runwire.v1.FlowService")),
        )
        assert metrics[latency] == 3


async def test_a_server_without_an_http_edge(server_factory: Any):
    async with (
        server_factory(http_address="off") as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        assert running.http_port is None and running.http is None
        created = await Grpc(channel)(
            "FlowService/CreateFlow", fpb.CreateFlowRequest(flow=flow_pb2.Flow(name=unique()))
        )
        assert created.created


def _raw_call(port: int, head: bytes) -> bytes:
    """Send `head` on a new connection and read what the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(OSError):  # the server may close before it has read it all
            sock.sendall(head)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
        return answer


async def test_connections_are_limited_in_head_size_time_and_number(server_factory: Any):
    # One host may hold half the connections: three of these six.
    async with server_factory(max_http_connections=6) as running:
        port = running.http_port
        # A request's headers are bounded: the server answers 400 and closes, rather than
        # keeping whatever a client sends.
        flood = (
            b"POST /runwire.v1.FlowService/ListFlows HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + (b"x-filler: " + b"a" * 1000 + b"\r\n") * 200
        )
        answer = await asyncio.to_thread(_raw_call, port, flood)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]

        def open_idle(count: int) -> list[socket.socket]:
            return [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(count)]

        idle = await asyncio.to_thread(open_idle, 5)
        try:
            await asyncio.sleep(0.3)
            # Past its host's limit, a connection is closed as soon as it opens.
            closed = []
            for sock in idle:
                sock.setblocking(False)
                try:
                    closed.append(sock.recv(1) == b"")
                except BlockingIOError:
                    closed.append(False)
                except OSError:
                    closed.append(True)
            assert closed.count(False) == 3, closed
            # One that sends nothing is closed once the time for a request's head is up.
            first = idle[closed.index(False)]
            first.setblocking(True)
            started = time.monotonic()
            assert await asyncio.to_thread(first.recv, 1) == b""
            assert time.monotonic() - started < 15
        finally:
            for sock in idle:
                sock.close()
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient() as client:
            answered = await client.post(
                f"http://127.0.0.1:{port}/runwire.v1.FlowService/ListFlows", json={}
            )
        assert answered.status_code == 200


async def test_a_server_without_tokens_answers_only_loopback_names(
    server: RunningServer, guarded: RunningServer, http: httpx.AsyncClient
):
    """A web page that reaches a local server through a name of its own (DNS rebinding) is
    refused by a server that has no tokens; a server with tokens needs no such rule."""
    path = "/runwire.v1.FlowService/ListFlows"
    for host in ("localhost:1", "127.0.0.1", "[::1]:80", "app.localhost"):
        answered = await http.post(
            f"http://127.0.0.1:{server.http_port}{path}", json={}, headers={"host": host}
        )
        assert answered.status_code == 200, (host, answered.text)
    for host in ("evil.example", "127.0.0.1.evil.example:80", "10.0.0.1"):
        answered = await http.post(
            f"http://127.0.0.1:{server.http_port}{path}", json={}, headers={"host": host}
        )
        assert answered.status_code == 403, host
        assert answered.json()["code"] == "permission_denied"
    answered = await http.post(
        f"http://127.0.0.1:{guarded.http_port}{path}",
        json={},
        headers={"host": "runwire.example", "authorization": f"Bearer {READ}"},
    )
    assert answered.status_code == 200, answered.text


async def test_gzip_requests_of_one_member_are_read_and_others_refused(
    server: RunningServer, http: httpx.AsyncClient
):
    url = f"http://127.0.0.1:{server.http_port}/runwire.v1.FlowService/ListFlows"
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    answered = await http.post(url, content=gzip.compress(b"{}"), headers=headers)
    assert answered.status_code == 200, answered.text
    # Many empty members, each of which connectrpc's own gzip would copy the rest for: refused
    # at once rather than read for half a minute.
    started = time.monotonic()
    answered = await http.post(url, content=gzip.compress(b"") * 200_000, headers=headers)
    assert answered.status_code == 400
    assert "more than one gzip member" in answered.json()["message"]
    assert time.monotonic() - started < 5


async def test_a_header_that_is_not_utf8_is_refused_naming_it(server: RunningServer):
    head = (
        b"POST /runwire.v1.FlowService/ListFlows HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nX-Odd: caf\xe9\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}"
    )
    answer = await asyncio.to_thread(_raw_call, server.http_port, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert b"x-odd" in answer and b"invalid_argument" in answer


async def test_requests_sent_ahead_and_slow_bodies_are_bounded(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
):
    from runwire_server.http import connections

    monkeypatch.setattr(connections, "BODY_SECONDS", 1.0)
    async with server_factory() as running:
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        answer = await asyncio.to_thread(_raw_call, running.http_port, request * 1000)
        # The first answers come, then a 400 once too many wait, and the connection closes.
        assert answer.count(b"HTTP/1.1 200") < 1000
        assert b"HTTP/1.1 400" in answer

        def trickle() -> bytes:
            with socket.create_connection(("127.0.0.1", running.http_port), timeout=10) as sock:
                sock.sendall(
                    b"POST /runwire.v1.FlowService/ListFlows HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
                )
                answer = b""
                with contextlib.suppress(OSError):
                    while chunk := sock.recv(65536):
                        answer += chunk
                return answer

        started = time.monotonic()
        await asyncio.to_thread(trickle)
        assert time.monotonic() - started < 5  # closed once the body's time is up


async def test_unknown_enum_names_in_json_are_refused_naming_the_field(
    server: RunningServer, http: httpx.AsyncClient
):
    url = f"http://127.0.0.1:{server.http_port}/runwire.v1.FlowRunService/CountFlowRuns"
    typo = {"filter": {"flowRuns": {"state": {"type": {"anyOf": ["STATE_TYPE_RUNING"]}}}}}
    answered = await http.post(url, json=typo)
    assert answered.status_code == 400, answered.text
    assert "STATE_TYPE_RUNING" in answered.json()["message"]
    # Unknown fields are still left out, for clients of a newer contract.
    answered = await http.post(url, json={"filter": {}, "aFieldOfTomorrow": 1})
    assert answered.status_code == 200, answered.text


async def test_any_origin_is_refused_on_a_server_without_tokens(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="CORS_ALLOWED_ORIGINS"):
        await start(make_settings(tmp_path / "a.db", cors_allowed_origins="*"))
    async with serving(
        make_settings(tmp_path / "b.db", cors_allowed_origins="*", tokens=f"read:{READ}")
    ) as running:
        assert running.http_port


@pytest.mark.parametrize("body", [b"null", b"5", b"[]", b'"text"'])
@pytest.mark.parametrize("padding", [0, 20_000])  # large ones are parsed by a decoding worker
async def test_a_json_request_that_is_not_an_object_is_refused(
    server: RunningServer, http: httpx.AsyncClient, body: bytes, padding: int
):
    answered = await http.post(
        f"http://127.0.0.1:{server.http_port}/runwire.v1.TaskRunService/CreateTaskRun",
        content=body + b" " * padding,
        headers={"content-type": "application/json"},
    )
    assert answered.status_code == 400, answered.text
    error = answered.json()
    assert error["code"] == "invalid_argument"
    assert "JSON object" in error["message"]


async def test_a_request_sent_behind_a_watch_does_not_end_it(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch, g: Grpc
):
    """A client may send its next request before a stream's answer has ended: it waits
    behind the stream, and the stream goes on past the time a head or a body may take."""
    from runwire_server.http import connections

    monkeypatch.setattr(connections, "BODY_SECONDS", 0.5)
    monkeypatch.setattr(connections, "HEAD_SECONDS", 0.5)
    async with server_factory() as running:
        base = f"http://127.0.0.1:{running.http_port}"
        async with httpx.AsyncClient() as client:
            flow = (
                await client.post(
                    f"{base}/runwire.v1.FlowService/CreateFlow", json={"flow": {"name": unique()}}
                )
            ).json()["flow"]["id"]
            run = (
                await client.post(
                    f"{base}/runwire.v1.FlowRunService/CreateFlowRun",
                    json={"flowRun": {"flowId": flow}},
                )
            ).json()["flowRun"]["id"]
        message = json.dumps({"flowRunId": run, "heartbeatInterval": "0.2s"}).encode()
        envelope = b"\x00" + len(message).to_bytes(4, "big") + message
        watch = (
            b"POST /runwire.v1.FlowRunService/WatchFlowRun HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/connect+json\r\n"
            + f"Content-Length: {len(envelope)}\r\n\r\n".encode()
            + envelope
        )
        # Its body is still to come: uvicorn reads no more while the watch runs.
        behind = (
            b"POST /runwire.v1.FlowService/ListFlows HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{}"
        )

        def read_for(seconds: float) -> bytes:
            with socket.create_connection(("127.0.0.1", running.http_port), timeout=5) as sock:
                sock.sendall(watch + behind)
                received = b""
                ends = time.monotonic() + seconds
                while time.monotonic() < ends:
                    sock.settimeout(max(0.05, ends - time.monotonic()))
                    try:
                        chunk = sock.recv(65536)
                    except TimeoutError:
                        break
                    if not chunk:
                        break
                    received += chunk
                return received

        received = await asyncio.to_thread(read_for, 3.0)
        # Heartbeats for the whole three seconds, six times the limits above.
        assert received.count(b"heartbeat") >= 8, received[-300:]
