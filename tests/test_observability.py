"""Metrics scraped over HTTP, deadlines that stop the server's work, and watches that give
back what they held when cancelled."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from runwire.v1 import (
    flow_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    state_pb2,
    watch_pb2,
)
from runwire_server.server import RunningServer
from tests.helpers import expect_error, make_flow, make_run, unique


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def calls(metrics: dict[Any, float], method: str, code: str) -> float:
    service, name = method.split("/")
    key = ("runwire_rpc_calls_total", (("code", code), ("method", name), ("service", service)))
    return metrics.get(key, 0.0)


async def wait_until(predicate: Any, what: str, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting until {what}")


async def test_metrics_count_calls_transitions_and_watch_streams(server_factory):
    async with (
        server_factory(metrics_address="127.0.0.1:0") as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        port = running.metrics_port
        assert port
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        run = await make_run(runs, (await make_flow(flows)).id)
        await expect_error(
            flows.GetFlowByName(flow_service_pb2.GetFlowByNameRequest(name=unique("none"))),
            grpc.StatusCode.NOT_FOUND,
        )
        for state_type in (state_pb2.STATE_TYPE_RUNNING, state_pb2.STATE_TYPE_PENDING):
            await runs.SetFlowRunState(
                flow_run_service_pb2.SetFlowRunStateRequest(
                    flow_run_id=run.id, state=state_pb2.State(type=state_type)
                )
            )
        stream = runs.WatchFlowRun(watch_pb2.WatchFlowRunRequest(flow_run_id=run.id))
        await stream.read()

        metrics = await asyncio.to_thread(scrape, port)
        assert calls(metrics, "runwire.v1.FlowService/CreateFlow", "OK") == 1
        assert calls(metrics, "runwire.v1.FlowService/GetFlowByName", "NOT_FOUND") == 1
        assert calls(metrics, "runwire.v1.FlowRunService/SetFlowRunState", "OK") == 2
        transitions = {
            dict(labels)["status"]: value
            for (name, labels), value in metrics.items()
            if name == "runwire_state_transitions_total"
        }
        # RUNNING is accepted; PENDING after RUNNING is aborted by the rules.
        assert transitions == {"ACCEPT": 1.0, "ABORT": 1.0}
        histogram = (
            "runwire_rpc_duration_seconds_count",
            (("method", "CreateFlow"), ("service", "runwire.v1.FlowService")),
        )
        assert metrics[histogram] == 1
        assert metrics[("runwire_watch_streams_open", ())] == 1

        # A cancelled watch gives back its stream slot and its broadcast subscription.
        stream.cancel()
        await wait_until(
            lambda: running.app.broadcaster.subscribers() == 0, "the subscription is released"
        )
        after = await asyncio.to_thread(scrape, port)
        assert after[("runwire_watch_streams_open", ())] == 0
        assert calls(after, "runwire.v1.FlowRunService/WatchFlowRun", "CANCELLED") == 1


@contextmanager
def write_lock_held(running: RunningServer) -> Iterator[None]:
    """Another process's transaction holds the lock every write needs."""
    db = running.app.db
    if db.is_sqlite:
        conn = sqlite3.connect(db.url.database or "", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(db.url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("LOCK TABLE flows IN EXCLUSIVE MODE")
            yield
            conn.rollback()
    finally:
        engine.dispose()


async def test_a_deadline_stops_the_servers_work(server_factory, database_overrides):
    async with (
        server_factory(**database_overrides) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        name = unique("late")
        request = flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=name))
        with write_lock_held(running):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await flows.CreateFlow(request, timeout=1.0)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # Give a write that was not stopped every chance to land once the lock is free.
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.5)
        await expect_error(
            flows.GetFlowByName(flow_service_pb2.GetFlowByNameRequest(name=name)),
            grpc.StatusCode.NOT_FOUND,
        )
        # The server is fine afterwards.
        created = await flows.CreateFlow(request, timeout=10)
        assert created.flow.name == name
