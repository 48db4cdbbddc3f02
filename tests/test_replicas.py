"""Several server replicas on one PostgreSQL database (needs RUNWIRE_TEST_POSTGRES_URL)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import create_engine, text

from runwire.v1 import (
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_pb2,
    log_service_pb2,
    log_service_pb2_grpc,
)
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import orchestration_pb2 as opb
from runwire.v1 import state_pb2 as ST
from runwire.v1 import watch_pb2 as wpb
from runwire_server.server import RunningServer, serving
from tests.conftest import fresh_postgres_database, make_settings


@pytest_asyncio.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, RunningServer, str]]:
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    with fresh_postgres_database(base) as url:
        async with (
            serving(make_settings(tmp_path / "unused-a.db", database_url=url)) as a,
            serving(make_settings(tmp_path / "unused-b.db", database_url=url)) as b,
        ):
            yield a, b, url


def stubs(channel: grpc.aio.Channel):
    return (
        flow_service_pb2_grpc.FlowServiceStub(channel),
        flow_run_service_pb2_grpc.FlowRunServiceStub(channel),
        log_service_pb2_grpc.LogServiceStub(channel),
    )


def cut_connections(url: str) -> None:
    """End every connection to the database of `url` but this one, as a restart would."""
    admin = create_engine(os.environ["RUNWIRE_TEST_POSTGRES_URL"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": url.rsplit("/", 1)[1]},
        )
    admin.dispose()


async def test_a_watcher_on_one_replica_sees_every_write_through_another(replicas):
    a, b, _ = replicas
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as on_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as on_b,
    ):
        flows_b, runs_b, logs_b = stubs(on_b)
        _, runs_a, _ = stubs(on_a)
        flow = (
            await flows_b.CreateFlow(
                flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="f"))
            )
        ).flow
        run = (
            await runs_b.CreateFlowRun(
                pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id))
            )
        ).flow_run
        stream = runs_a.WatchFlowRun(wpb.WatchFlowRunRequest(flow_run_id=run.id))
        while (await stream.read()).WhichOneof("event") != "caught_up":
            pass
        await runs_b.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=run.id, state=ST.State(type=ST.STATE_TYPE_RUNNING)
            )
        )
        for batch in range(5):
            await logs_b.CreateLogs(
                log_service_pb2.CreateLogsRequest(
                    logs=[
                        log_pb2.Log(flow_run_id=run.id, level=20, message=f"{batch}-{i}")
                        for i in range(20)
                    ]
                )
            )
        await runs_b.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=run.id, state=ST.State(type=ST.STATE_TYPE_COMPLETED)
            )
        )
        seen = []
        while (message := await stream.read()) is not grpc.aio.EOF:
            seen.append(message)
        kinds = [m.WhichOneof("event") for m in seen]
        assert kinds[0] == "flow_run_state" and kinds[-2:] == ["flow_run_state", "end"]
        assert [m.log.message for m in seen if m.WhichOneof("event") == "log"] == [
            f"{b}-{i}" for b in range(5) for i in range(20)
        ]
        cursors = [m.cursor for m in seen[:-1]]
        assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)


async def test_claims_race_across_replicas(replicas):
    a, b, _ = replicas
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as on_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as on_b,
    ):
        flows_a, runs_a, _ = stubs(on_a)
        _, runs_b, _ = stubs(on_b)
        flow = (
            await flows_a.CreateFlow(
                flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="f"))
            )
        ).flow
        run = (
            await runs_a.CreateFlowRun(
                pb.CreateFlowRunRequest(
                    flow_run=flow_run_pb2.FlowRun(
                        flow_id=flow.id, state=ST.State(type=ST.STATE_TYPE_SCHEDULED)
                    )
                )
            )
        ).flow_run
        claim = pb.SetFlowRunStateRequest(
            flow_run_id=run.id, state=ST.State(type=ST.STATE_TYPE_PENDING)
        )
        results = await asyncio.gather(
            *[(runs_a if i % 2 else runs_b).SetFlowRunState(claim) for i in range(20)]
        )
        statuses = [r.result.status for r in results]
        assert statuses.count(opb.SET_STATE_STATUS_ACCEPT) == 1
        key = pb.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, idempotency_key="k")
        )
        created = await asyncio.gather(
            *[(runs_a if i % 2 else runs_b).CreateFlowRun(key) for i in range(20)]
        )
        assert sum(r.created for r in created) == 1


async def test_the_server_recovers_when_database_connections_are_cut(replicas):
    a, _, url = replicas
    async with grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel:
        flows, _, _ = stubs(channel)
        await flows.CreateFlow(
            flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="before"))
        )
        cut_connections(url)
        # Pooled connections were cut: the next calls reconnect (or answer UNAVAILABLE, never
        # INTERNAL) and the server serves again.
        for _ in range(20):
            try:
                await flows.CreateFlow(
                    flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="after"))
                )
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                await asyncio.sleep(0.2)
        else:
            pytest.fail("the server did not recover")
        got = await flows.GetFlowByName(flow_service_pb2.GetFlowByNameRequest(name="after"))
        assert got.flow.name == "after"


async def test_reads_are_answered_across_cut_connections(replicas):
    """A read that finds its pooled connection cut is repeated on a new one: the client sees
    no error, whether the connection had just been used or had sat idle."""
    a, _, url = replicas
    async with grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel:
        flows, runs, _ = stubs(channel)
        flow = (
            await flows.CreateFlow(flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="r")))
        ).flow
        run = (
            await runs.CreateFlowRun(
                pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id))
            )
        ).flow_run
        for idle in (0.0, 1.5):
            # Every connection of the pool in use at once, so each is cut after use.
            await asyncio.gather(
                *[runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id)) for _ in range(16)]
            )
            cut_connections(url)
            await asyncio.sleep(idle)
            got = await asyncio.gather(
                *[runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id)) for _ in range(16)]
            )
            assert {g.flow_run.id for g in got} == {run.id}


async def test_a_deletion_ends_watches_on_every_replica(replicas):
    a, b, _ = replicas
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as on_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as on_b,
    ):
        flows_b, runs_b, _ = stubs(on_b)
        _, runs_a, _ = stubs(on_a)
        flow = (
            await flows_b.CreateFlow(
                flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="deleted"))
            )
        ).flow
        runs = [
            (
                await runs_b.CreateFlowRun(
                    pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id))
                )
            ).flow_run
            for _ in range(2)
        ]
        streams = []
        for stub in (runs_a, runs_b):
            for run in runs:
                stream = stub.WatchFlowRun(wpb.WatchFlowRunRequest(flow_run_id=run.id))
                while (await stream.read()).WhichOneof("event") != "caught_up":
                    pass
                streams.append(stream)
        # One run deleted alone, the other with its flow: both end every watch, on both.
        await runs_b.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id=runs[0].id))
        await flows_b.DeleteFlow(flow_service_pb2.DeleteFlowRequest(flow_id=flow.id))
        for stream in streams:
            end = await asyncio.wait_for(stream.read(), 10)
            assert end.WhichOneof("event") == "end"
            assert end.end.reason == wpb.StreamEnd.REASON_RUN_DELETED
            assert await stream.read() is grpc.aio.EOF


async def test_replicas_prune_one_at_a_time(tmp_path: Path):
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    retention = {"event_retention_seconds": 0.5, "retention_interval_seconds": 3600}
    with fresh_postgres_database(base) as url:
        async with (
            serving(make_settings(tmp_path / "a.db", database_url=url, **retention)) as a,
            serving(make_settings(tmp_path / "b.db", database_url=url, **retention)) as b,
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel,
        ):
            flows, runs, _ = stubs(channel)
            flow = (
                await flows.CreateFlow(
                    flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="pruned"))
                )
            ).flow
            for _ in range(150):  # more than one batch
                run = (
                    await runs.CreateFlowRun(
                        pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id))
                    )
                ).flow_run
                await runs.SetFlowRunState(
                    pb.SetFlowRunStateRequest(
                        flow_run_id=run.id, state=ST.State(type=ST.STATE_TYPE_COMPLETED)
                    )
                )
            await asyncio.sleep(0.7)
            first, second = await asyncio.gather(a.retention.prune(), b.retention.prune())
            again = await a.retention.prune()
            # Every Pending event went, once; whichever replica held the lock removed it.
            assert first["events"] + second["events"] + again["events"] == 150
