"""The HTTP edge beside the gRPC edge: GetFlowRun, ListFlowRuns (50 runs) and the lifecycle
over gRPC, Connect binary (`application/proto`) and Connect JSON (`application/json`), on one
server process and one database, as the server's CPU per call.

The three protocols take turns: each case is measured in rounds, and every round runs each
protocol once, in an order that rotates, so that a change of the machine's speed during the
run falls on all three alike. The figure of a protocol sums its rounds.

HTTP/1.1 carries one call at a time on a connection, so the Connect client holds one
connection per call in flight (16 at concurrency 16); gRPC multiplexes its calls over 4. The
Connect client acknowledges what it receives at once (bench.connect_client, `quickack`), so
that its figures do not depend on whether the edge's connections turn Nagle's algorithm off: a
server that leaves it on holds each answer on a reused connection back until the client's
delayed acknowledgment (up to 40 ms). The last two rows check it: one connection, one call at a
time, with a plain client and with this one.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from bench.connect_client import ConnectClient
from bench.harness import Figure, Measured, drive, measure, percentile, start_runwire
from bench.workloads import CHANNELS, _flow, channels, close, seeded_run_ids
from runwire.v1 import (
    filters_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    state_pb2,
)

PROTOCOLS = ("gRPC", "Connect binary", "Connect JSON")
CODEC = {"Connect binary": "proto", "Connect JSON": "json"}
# The goals: CPU per call at most this many times gRPC's.
GOALS = {"Connect binary": 1.5, "Connect JSON": 2.0}
ROUNDS = 3
SERVICE = "/runwire.v1.FlowRunService/"

Op = Callable[[int], Awaitable[Any]]


@dataclass
class Case:
    workload: str
    case: str
    concurrency: int
    ops: int  # per protocol, over all rounds
    unit: str = "calls"
    calls_per_op: int = 1
    max_seconds: float | None = None  # per protocol, over all rounds


def http_url(proc: Any) -> str:
    for event in proc.lines:
        if event.get("event") == "server.listening" and event.get("http"):
            return str(event["http"])
    raise RuntimeError("the server's listening line names no HTTP address")


def completed_filter() -> filters_pb2.FlowRunCriteria:
    return filters_pb2.FlowRunCriteria(
        flow_runs=filters_pb2.FlowRunFilter(
            state=filters_pb2.StateFilter(
                type=filters_pb2.StateTypeFilter(
                    any_of=filters_pb2.StateTypeList(values=[state_pb2.STATE_TYPE_COMPLETED])
                )
            )
        )
    )


class GrpcCalls:
    def __init__(self, chans: list[grpc.aio.Channel], ids: list[str], flow_id: str) -> None:
        self.stubs = [flow_run_service_pb2_grpc.FlowRunServiceStub(c) for c in chans]
        self.ids = ids
        self.flow_id = flow_id
        self.list_request = flow_run_service_pb2.ListFlowRunsRequest(
            filter=completed_filter(),
            page_size=50,
            sort=filters_pb2.FLOW_RUN_SORT_START_TIME_DESC,
        )

    async def get(self, i: int) -> None:
        await self.stubs[i % CHANNELS].GetFlowRun(
            flow_run_service_pb2.GetFlowRunRequest(flow_run_id=self.ids[i % len(self.ids)])
        )

    async def list_page(self, i: int) -> None:
        response = await self.stubs[i % CHANNELS].ListFlowRuns(self.list_request)
        assert len(response.flow_runs) == 50

    async def lifecycle(self, i: int) -> None:
        stub = self.stubs[i % CHANNELS]
        run = await stub.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=self.flow_id)
            )
        )
        for state_type in (state_pb2.STATE_TYPE_RUNNING, state_pb2.STATE_TYPE_COMPLETED):
            await stub.SetFlowRunState(
                flow_run_service_pb2.SetFlowRunStateRequest(
                    flow_run_id=run.flow_run.id, state=state_pb2.State(type=state_type)
                )
            )


class ConnectCalls:
    """The same calls over Connect; requests are built as a client would build them (a
    message serialized, or a JSON document written), per call."""

    def __init__(self, client: ConnectClient, ids: list[str], flow_id: str) -> None:
        self.client = client
        self.binary = client.codec == "proto"
        self.ids = ids
        self.flow_id = flow_id
        list_request = flow_run_service_pb2.ListFlowRunsRequest(
            filter=completed_filter(),
            page_size=50,
            sort=filters_pb2.FLOW_RUN_SORT_START_TIME_DESC,
        )
        self.list_body = (
            list_request.SerializeToString()
            if self.binary
            else json.dumps(
                {
                    "filter": {
                        "flowRuns": {
                            "state": {"type": {"anyOf": {"values": ["STATE_TYPE_COMPLETED"]}}}
                        }
                    },
                    "pageSize": 50,
                    "sort": "FLOW_RUN_SORT_START_TIME_DESC",
                }
            ).encode()
        )

    async def get(self, i: int) -> None:
        run_id = self.ids[i % len(self.ids)]
        body = (
            flow_run_service_pb2.GetFlowRunRequest(flow_run_id=run_id).SerializeToString()
            if self.binary
            else b'{"flowRunId":"%s"}' % run_id.encode()
        )
        await self.client.unary(SERVICE + "GetFlowRun", body)

    async def list_page(self, i: int) -> None:
        answer = await self.client.unary(SERVICE + "ListFlowRuns", self.list_body)
        if self.binary:
            runs = flow_run_service_pb2.ListFlowRunsResponse.FromString(answer).flow_runs
        else:
            runs = json.loads(answer)["flowRuns"]
        assert len(runs) == 50

    async def lifecycle(self, i: int) -> None:
        if self.binary:
            created = await self.client.unary(
                SERVICE + "CreateFlowRun",
                flow_run_service_pb2.CreateFlowRunRequest(
                    flow_run=flow_run_pb2.FlowRun(flow_id=self.flow_id)
                ).SerializeToString(),
            )
            run_id = flow_run_service_pb2.CreateFlowRunResponse.FromString(created).flow_run.id
            for state_type in (state_pb2.STATE_TYPE_RUNNING, state_pb2.STATE_TYPE_COMPLETED):
                await self.client.unary(
                    SERVICE + "SetFlowRunState",
                    flow_run_service_pb2.SetFlowRunStateRequest(
                        flow_run_id=run_id, state=state_pb2.State(type=state_type)
                    ).SerializeToString(),
                )
            return
        created = await self.client.unary(
            SERVICE + "CreateFlowRun", b'{"flowRun":{"flowId":"%s"}}' % self.flow_id.encode()
        )
        run_id = json.loads(created)["flowRun"]["id"]
        for state in ("STATE_TYPE_RUNNING", "STATE_TYPE_COMPLETED"):
            await self.client.unary(
                SERVICE + "SetFlowRunState",
                b'{"flowRunId":"%s","state":{"type":"%s"}}' % (run_id.encode(), state.encode()),
            )


async def side_by_side(
    server: Measured, case: Case, ops: dict[str, Op], rounds: int = ROUNDS
) -> list[Figure]:
    """`case` over every protocol, in `rounds` rounds of rotating order."""
    latencies: dict[str, list[float]] = {p: [] for p in ops}
    seconds = dict.fromkeys(ops, 0.0)
    cpu = dict.fromkeys(ops, 0.0)
    names = list(ops)
    per_round = max(1, case.ops // rounds)
    budget = None if case.max_seconds is None else case.max_seconds / rounds
    for turn in range(rounds):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            before = server.cpu_seconds()
            elapsed, measured = await drive(ops[name], per_round, case.concurrency, budget)
            cpu[name] += server.cpu_seconds() - before
            seconds[name] += elapsed
            latencies[name] += measured
    figures = []
    for name in names:
        done = len(latencies[name])
        figures.append(
            Figure(
                workload=case.workload,
                case=f"{case.case}, {name}",
                ops=done,
                unit=case.unit,
                seconds=seconds[name],
                p50_ms=statistics.median(latencies[name]) * 1000,
                p99_ms=percentile(latencies[name], 0.99) * 1000,
                server_cpu_s_per_1000=cpu[name] / done * 1000,
                server_peak_rss_mib=server.peak_rss_mib(),
                calls_per_op=case.calls_per_op,
            )
        )
    if "gRPC" in ops:
        grpc_cpu = figures[names.index("gRPC")].server_cpu_s_per_1000
        for figure in figures:
            assert figure.server_cpu_s_per_1000 is not None and grpc_cpu
            figure.cpu_ratio_to_grpc = figure.server_cpu_s_per_1000 / grpc_cpu
    return figures


async def http_edge(
    database_url: str,
    stored: int,
    calls: int,
    runs: int,
    protocols: tuple[str, ...] = PROTOCOLS,
    probe: bool = True,
) -> list[Figure]:
    """GetFlowRun (concurrency 16), ListFlowRuns (50 runs, concurrency 1) and the lifecycle
    (concurrency 16), each over gRPC, Connect binary and Connect JSON, on one server; then,
    with `probe`, one call at a time on one connection, with delayed and quick ACKs."""
    ids = seeded_run_ids(database_url, stored)
    proc = start_runwire(database_url)
    url = http_url(proc)
    chans = channels(proc.port)
    clients = {
        name: ConnectClient(url, codec, 16) for name, codec in CODEC.items() if name in protocols
    }
    try:
        for client in clients.values():
            await client.open()
        flow_id = await _flow(chans[0], "bench-http")
        callers: dict[str, Any] = {}
        if "gRPC" in protocols:
            callers["gRPC"] = GrpcCalls(chans, ids, flow_id)
        callers |= {name: ConnectCalls(c, ids, flow_id) for name, c in clients.items()}
        server = Measured(proc.process.pid)
        label = f"{stored:,} runs"
        cases = [
            (Case("GetFlowRun", f"{label}, concurrency 16", 16, calls, max_seconds=90), "get"),
            (
                Case(
                    "ListFlowRuns",
                    f"{label}, 50 COMPLETED by start time, concurrency 1",
                    1,
                    calls // 4,
                    max_seconds=90,
                ),
                "list_page",
            ),
            (
                Case(
                    "lifecycle",
                    "concurrency 16",
                    16,
                    runs,
                    unit="runs",
                    calls_per_op=3,
                    max_seconds=120,
                ),
                "lifecycle",
            ),
        ]
        # Warm-up: every path of every protocol once, so that no first call is measured.
        for name, caller in callers.items():
            for _, method in cases:
                await drive(getattr(caller, method), 50, 4)
            print(f"  {name} warmed up", flush=True)
        figures: list[Figure] = []
        for case, method in cases:
            print(f"  {case.workload} ...", flush=True)
            figures += await side_by_side(
                server, case, {name: getattr(caller, method) for name, caller in callers.items()}
            )
        if probe:
            print("  one keep-alive connection ...", flush=True)
        for quickack, how in ((False, "delayed ACKs, as most clients"), (True, "quick ACKs")):
            if not probe:
                break
            plain = await ConnectClient(url, "proto", 1, quickack=quickack).open()
            try:
                get = ConnectCalls(plain, ids, flow_id).get
                await drive(get, 5, 1)
                figures.append(
                    await measure(
                        "GetFlowRun",
                        f"one connection, concurrency 1, Connect binary, {how}",
                        server,
                        get,
                        100,
                        1,
                    )
                )
            finally:
                plain.close()
        return figures
    finally:
        for client in clients.values():
            client.close()
        await close(chans)
        proc.stop()


def verdict(figure: Figure) -> str:
    protocol = figure.case.rsplit(", ", 1)[1]
    goal = GOALS.get(protocol)
    if goal is None or figure.cpu_ratio_to_grpc is None:
        return ""
    met = "met" if figure.cpu_ratio_to_grpc <= goal else "MISSED"
    return f"{met} (goal {goal}x)"
