"""The clients' retry, deadline and resume logic, against in-process fake servicers that do
on demand what a real server will not: answer UNAVAILABLE and then succeed, answer after the
deadline, cut a watch stream after a few messages.

The servers come from pytest-grpc's fixtures (`grpc_add_to_server`, `grpc_servicer`,
`grpc_stub_cls`, then `grpc_server` and `grpc_addr`): a real gRPC server on a loopback port,
so the clients' own channels, deadlines and status handling are what is tested. pytest-grpc
runs a synchronous server, which serves both clients alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from runwire import AsyncClient, Client, DeadlineExceeded, Unavailable
from runwire.v1 import (
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_pb2,
    state_pb2,
    watch_pb2,
)

# Calls that are kept waiting each hold a worker of the fake server.
grpc_max_workers = 8
SLOW = 3.0  # seconds the slow answer takes
DEADLINE = 0.5
CUT_AFTER = 3  # messages a watch stream carries before it is cut
LAST_CURSOR = 7
AWAY = 0.3  # seconds a shutting-down server asks callers to wait


class Flows(flow_service_pb2_grpc.FlowServiceServicer):
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.unavailable_first = 0
        self.calls = 0

    def GetFlow(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls += 1
        if self.calls <= self.unavailable_first:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        return flow_service_pb2.GetFlowResponse(flow=flow_pb2.Flow(id=request.flow_id, name="f"))

    def GetFlowByName(self, request: Any, context: grpc.ServicerContext) -> Any:
        time.sleep(SLOW)
        return flow_service_pb2.GetFlowByNameResponse(flow=flow_pb2.Flow(name=request.name))


class FlowRuns(flow_run_service_pb2_grpc.FlowRunServiceServicer):
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.opened_after: list[int | None] = []
        self.creates: list[float] = []  # when each create arrived
        self.shutting_down_first = False

    def CreateFlowRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.creates.append(time.monotonic())
        if not self.shutting_down_first:
            context.abort(grpc.StatusCode.UNAVAILABLE, "gone")
        if len(self.creates) == 1:
            context.abort_with_status(rpc_status.to_status(_shutting_down()))
        pending = state_pb2.State(type=state_pb2.STATE_TYPE_PENDING, name="Pending")
        run = flow_run_pb2.FlowRun(id="run", flow_id=request.flow_run.flow_id, state=pending)
        return flow_run_service_pb2.CreateFlowRunResponse(flow_run=run)

    def WatchFlowRun(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        after = request.after_cursor if request.HasField("after_cursor") else None
        self.opened_after.append(after)
        start = (after or 0) + 1
        for sent, cursor in enumerate(range(start, LAST_CURSOR + 1)):
            if len(self.opened_after) == 1 and sent == CUT_AFTER:
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection cut")
            yield watch_pb2.WatchFlowRunResponse(
                cursor=cursor, log=log_pb2.Log(flow_run_id=request.flow_run_id, message=str(cursor))
            )
        yield watch_pb2.WatchFlowRunResponse(
            end=watch_pb2.StreamEnd(reason=watch_pb2.StreamEnd.REASON_RUN_FINISHED)
        )


def _shutting_down() -> status_pb2.Status:
    """What a server that is stopping answers a call it has not begun: come back later."""
    info = error_details_pb2.ErrorInfo(reason="SERVER_SHUTTING_DOWN", domain="runwire.dev")
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromTimedelta(timedelta(seconds=AWAY))
    details = [any_pb2.Any(), any_pb2.Any()]
    details[0].Pack(info)
    details[1].Pack(retry)
    return status_pb2.Status(
        code=code_pb2.UNAVAILABLE, message="the server is shutting down", details=details
    )


class Fakes:
    """The fake servicers; only the services the tests need are faked, with real messages."""

    def __init__(self) -> None:
        self.flows = Flows()
        self.flow_runs = FlowRuns()

    def reset(self) -> None:
        self.flows.reset()
        self.flow_runs.reset()


@pytest.fixture(scope="module")
def grpc_add_to_server() -> Any:
    def add(fakes: Fakes, server: grpc.Server) -> None:
        flow_service_pb2_grpc.add_FlowServiceServicer_to_server(fakes.flows, server)
        flow_run_service_pb2_grpc.add_FlowRunServiceServicer_to_server(fakes.flow_runs, server)

    return add


@pytest.fixture(scope="module")
def grpc_servicer() -> Fakes:
    return Fakes()


@pytest.fixture(scope="module")
def grpc_stub_cls() -> Any:
    return flow_service_pb2_grpc.FlowServiceStub


@pytest.fixture
def fakes(grpc_servicer: Fakes, grpc_server: grpc.Server) -> Fakes:
    """The fake servicers, fresh for each test, on the module's running server."""
    grpc_servicer.reset()
    return grpc_servicer


def test_the_fake_server_answers(grpc_stub: Any, fakes: Fakes) -> None:
    answer = grpc_stub.GetFlow(flow_service_pb2.GetFlowRequest(flow_id="x"))
    assert answer.flow.name == "f"


def test_unavailable_then_success_is_retried(grpc_addr: str, fakes: Fakes) -> None:
    fakes.flows.unavailable_first = 2
    with Client(grpc_addr, timeout=5, retries=4) as client:
        assert client.get_flow("a").flow_id == "a"
    assert fakes.flows.calls == 3


async def test_unavailable_then_success_is_retried_async(grpc_addr: str, fakes: Fakes) -> None:
    fakes.flows.unavailable_first = 2
    async with AsyncClient(grpc_addr, timeout=5, retries=4) as client:
        assert (await client.get_flow("a")).flow_id == "a"
    assert fakes.flows.calls == 3


def test_retries_run_out(grpc_addr: str, fakes: Fakes) -> None:
    fakes.flows.unavailable_first = 10
    with Client(grpc_addr, timeout=5, retries=1) as client, pytest.raises(Unavailable):
        client.get_flow("a")
    assert fakes.flows.calls == 2


async def test_a_call_unsafe_to_repeat_is_not_retried(grpc_addr: str, fakes: Fakes) -> None:
    with Client(grpc_addr, timeout=5, retries=4) as client, pytest.raises(Unavailable):
        client.create_flow_run("flow")  # no idempotency key: a retry could make two runs
    async with AsyncClient(grpc_addr, timeout=5, retries=4) as aclient:
        with pytest.raises(Unavailable):
            await aclient.create_flow_run("flow")
    assert len(fakes.flow_runs.creates) == 2


def test_a_call_refused_by_a_server_shutting_down_is_sent_again_later(
    grpc_addr: str, fakes: Fakes
) -> None:
    """Even a call unsafe to repeat: the server refused it before doing anything."""
    fakes.flow_runs.shutting_down_first = True
    with Client(grpc_addr, timeout=5) as client:
        assert client.create_flow_run("flow").flow_run_id == "run"
    first, second = fakes.flow_runs.creates
    assert second - first >= AWAY * 0.9


async def test_a_call_refused_by_a_server_shutting_down_is_sent_again_later_async(
    grpc_addr: str, fakes: Fakes
) -> None:
    fakes.flow_runs.shutting_down_first = True
    async with AsyncClient(grpc_addr, timeout=5) as client:
        assert (await client.create_flow_run("flow")).flow_run_id == "run"
    first, second = fakes.flow_runs.creates
    assert second - first >= AWAY * 0.9


def test_an_answer_after_the_deadline_raises_promptly(grpc_addr: str, fakes: Fakes) -> None:
    with Client(grpc_addr, timeout=DEADLINE) as client:
        client.get_flow("warm")  # connected: the deadline below is the call's alone
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.get_flow_by_name("slow")
        took = time.monotonic() - started
    assert DEADLINE * 0.8 <= took < SLOW / 2, f"{took:.2f}s"


async def test_an_answer_after_the_deadline_raises_promptly_async(
    grpc_addr: str, fakes: Fakes
) -> None:
    async with AsyncClient(grpc_addr, timeout=DEADLINE) as client:
        await client.get_flow("warm")
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await client.get_flow_by_name("slow")
        took = time.monotonic() - started
    assert DEADLINE * 0.8 <= took < SLOW / 2, f"{took:.2f}s"


EXPECTED = [str(cursor) for cursor in range(1, LAST_CURSOR + 1)]


def test_a_cut_watch_resumes_from_its_cursor(grpc_addr: str, fakes: Fakes) -> None:
    with Client(grpc_addr, timeout=5) as client:
        lines = [m.log.message for m in client.watch("run", after_cursor=0)]
    assert lines == EXPECTED  # every message once, in order
    assert fakes.flow_runs.opened_after == [0, CUT_AFTER]


async def test_a_cut_watch_resumes_from_its_cursor_async(grpc_addr: str, fakes: Fakes) -> None:
    async with AsyncClient(grpc_addr, timeout=5) as client:
        lines = [m.log.message async for m in client.watch("run", after_cursor=0)]
    assert lines == EXPECTED
    assert fakes.flow_runs.opened_after == [0, CUT_AFTER]


def test_a_watch_without_a_cursor_resumes_after_the_last_message(
    grpc_addr: str, fakes: Fakes
) -> None:
    with Client(grpc_addr, timeout=5) as client:
        lines = [m.log.message for m in client.watch("run")]
    assert lines == EXPECTED
    assert fakes.flow_runs.opened_after == [None, CUT_AFTER]


async def test_a_watch_without_a_cursor_resumes_after_the_last_message_async(
    grpc_addr: str, fakes: Fakes
) -> None:
    async with AsyncClient(grpc_addr, timeout=5) as client:
        lines = [m.log.message async for m in client.watch("run")]
    assert lines == EXPECTED
    assert fakes.flow_runs.opened_after == [None, CUT_AFTER]
