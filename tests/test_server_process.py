"""`runwire server start` as a user runs it: reflection, health, and a clean SIGTERM."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.conftest import start_server_process

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
    import subprocess

    from tests.conftest import RUNWIRE_CLI

    result = subprocess.run(
        [str(RUNWIRE_CLI), "server", "start", "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "log_format" in result.stderr
