"""`runwire server start` as a user runs it: reflection, health, and a clean SIGTERM."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from runwire_server.server import ConfigurationError, serving, start
from tests.conftest import RUNWIRE_CLI, make_settings, start_server_process

SERVICES = {
    "runwire.v1.FlowService",
    "runwire.v1.DeploymentService",
    "runwire.v1.FlowRunService",
    "runwire.v1.TaskRunService",
    "runwire.v1.LogService",
}


def test_cli_server_serves_reflection_and_health_then_stops_cleanly(tmp_path: Path) -> None:
    db_file = tmp_path / "nested" / "dir" / "runwire.db"
    proc = start_server_process(f"sqlite:///{db_file}")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
            services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            assert services >= SERVICES
            # Every method of the contract is described, so generic clients can call it.
            database = ProtoReflectionDescriptorDatabase(channel)
            described = database.FindFileContainingSymbol("runwire.v1.FlowRunService")
            assert any(s.name == "FlowRunService" for s in described.service)

            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", *SERVICES):
                reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        code = proc.stop()
    assert code == 0
    events = [line["event"] for line in proc.lines]
    assert events[-2:] == ["server.stopping", "server.stopped"]
    assert db_file.exists()


def test_cli_rejects_a_bad_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(RUNWIRE_CLI), "server", "start", "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "runwire: --log-format/RUNWIRE_LOG_FORMAT must be console or json, not 'xml'"
    ]


async def test_sigterm_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """Calls in flight when SIGTERM arrives either finish or fail with a retryable status, and
    every run the server acknowledged is there after a restart."""
    import asyncio

    from runwire.v1 import (
        flow_pb2,
        flow_run_pb2,
        flow_run_service_pb2,
        flow_run_service_pb2_grpc,
        flow_service_pb2,
        flow_service_pb2_grpc,
    )

    url = f"sqlite:///{tmp_path / 'runwire.db'}"
    proc = start_server_process(url)
    acknowledged: list[str] = []
    failures: list[grpc.StatusCode] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        flow = (
            await flows.CreateFlow(flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="f")))
        ).flow
        request = flow_run_service_pb2.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(flow_id=flow.id)
        )

        async def writer() -> None:
            for _ in range(400):
                try:
                    # A deadline longer than the server's 10 s grace period: a call still open
                    # when the grace period ends is cancelled by the server, not by the client.
                    response = await runs.CreateFlowRun(request, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    failures.append(exc.code())
                    return
                acknowledged.append(response.flow_run.id)
                if len(acknowledged) == 200:
                    busy.set()

        busy = asyncio.Event()
        writers = [asyncio.create_task(writer()) for _ in range(8)]
        await busy.wait()
        code = await asyncio.to_thread(proc.stop)
        await asyncio.gather(*writers)
    assert code == 0
    assert set(failures) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, failures

    again = start_server_process(url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{again.port}") as channel:
            runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
            for run_id in acknowledged:
                got = await runs.GetFlowRun(
                    flow_run_service_pb2.GetFlowRunRequest(flow_run_id=run_id)
                )
                assert got.flow_run.id == run_id
    finally:
        again.stop()


def _second_server(address: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(RUNWIRE_CLI),
            "server",
            "start",
            "--listen-address",
            address,
            "--database-url",
            database_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RUNWIRE_LOG_FORMAT": "json"},
    )


def test_a_second_server_on_an_address_in_use_is_refused(tmp_path: Path) -> None:
    first = start_server_process(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        second = _second_server(f"127.0.0.1:{first.port}", f"sqlite:///{tmp_path / 'two.db'}")
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"cannot listen on 127.0.0.1:{first.port}" in second.stderr
        assert "Address already in use" in second.stderr
        with grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
    finally:
        assert first.stop() == 0


def test_a_second_server_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = start_server_process(url)
    try:
        second = _second_server("127.0.0.1:0", url)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1, second.stderr
        assert "shared.db is in use by another Runwire server" in second.stderr
    finally:
        assert first.stop() == 0
    # Once the first has stopped, the file is free again.
    again = start_server_process(url)
    assert again.stop() == 0


async def test_servers_in_one_process_take_turns_on_a_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "turns.db")
    async with serving(settings):
        with pytest.raises(ConfigurationError, match="in use by another Runwire server"):
            await start(settings)
    async with serving(settings):
        pass
