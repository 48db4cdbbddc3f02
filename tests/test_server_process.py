"""`runwire server start` as a user runs it: reflection, health, and a clean SIGTERM."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import grpc
import psutil
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
    "runwire.v1.ConcurrencyLimitService",
    "runwire.v1.ServerService",
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


def test_sigterm_under_load_answers_every_call(tmp_path: Path) -> None:
    """32 threads of the runwire client create runs while SIGTERM arrives: every call is
    answered (OK, or UNAVAILABLE before any work; a call made after the server has gone waits
    for it until its deadline), none is cut off with CANCELLED, every run the server
    acknowledged is there after a restart, and no refused create wrote anything."""
    import threading
    import time
    import uuid

    import runwire
    from runwire.errors import DeadlineExceeded, RunwireError, Unavailable
    from tests.integrity import stored_keys

    url = f"sqlite:///{tmp_path / 'runwire.db'}"
    proc = start_server_process(url)
    address = f"127.0.0.1:{proc.port}"
    with runwire.Client(address) as client:
        flow_id = client.create_flow("f").flow_id
    acknowledged: dict[str, str] = {}  # idempotency key -> run id
    refused: dict[str, type[RunwireError]] = {}
    busy, stop = threading.Event(), threading.Event()

    def writer() -> None:
        with runwire.Client(address, timeout=5) as client:
            while not stop.is_set():
                key = uuid.uuid4().hex
                try:
                    run = client.create_flow_run(flow_id, idempotency_key=key)
                except RunwireError as exc:
                    refused[key] = type(exc)
                    time.sleep(0.05)
                    continue
                acknowledged[key] = run.flow_run_id
                if len(acknowledged) >= 300:
                    busy.set()

    writers = [threading.Thread(target=writer) for _ in range(32)]
    for thread in writers:
        thread.start()
    assert busy.wait(60)
    code = proc.stop()
    time.sleep(0.5)
    stop.set()
    for thread in writers:
        thread.join(30)
    assert code == 0
    assert refused, "SIGTERM came while creates were being made"
    assert set(refused.values()) <= {Unavailable, DeadlineExceeded}, set(refused.values())
    keys = stored_keys(url)
    assert set(acknowledged) <= keys
    assert not set(refused) & keys

    again = start_server_process(url)
    try:
        with runwire.Client(f"127.0.0.1:{again.port}") as client:
            for run_id in list(acknowledged.values())[:50]:
                assert client.get_flow_run(run_id).flow_run_id == run_id
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


@pytest.mark.parametrize("ending", ["SIGTERM", "SIGKILL"])
def test_the_processes_a_server_starts_end_with_it(tmp_path: Path, ending: str) -> None:
    """The server starts a worker that checks large requests; however the server ends, the
    worker ends too."""
    proc = start_server_process(f"sqlite:///{tmp_path / 'runwire.db'}")
    proc.drain_output()
    server = psutil.Process(proc.process.pid)
    deadline = time.monotonic() + 30
    while not (children := server.children(recursive=True)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children, "the server starts its decoding worker when it starts"
    if ending == "SIGTERM":
        assert proc.stop() == 0
    else:
        proc.process.kill()
        proc.process.wait(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=15)
    assert alive == []
