"""Fixtures: a real Runwire server on a free loopback port, over a real SQLite file and, when
RUNWIRE_TEST_POSTGRES_URL is set, over a fresh PostgreSQL database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import create_engine, make_url

from runwire.v1 import (
    deployment_service_pb2_grpc,
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    log_service_pb2_grpc,
    task_run_service_pb2_grpc,
)
from runwire_server import auth
from runwire_server.log_config import configure_logging
from runwire_server.server import RunningServer, serving
from runwire_server.settings import Settings

configure_logging("WARNING", "console")
# Servers started by the tests, in this process or as `runwire server start` processes, take
# any free port for their HTTP edge: the default one may be in use by a server of the machine's.
os.environ["RUNWIRE_HTTP_ADDRESS"] = "127.0.0.1:0"
RUNWIRE_CLI = Path(sys.executable).with_name("runwire")
# The dashboard's browser fixtures (they skip where Chromium is not installed).
pytest_plugins = ["tests.browser"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="run the fuzz, crash and load tests at full size (see RELIABILITY.md)",
    )


@dataclass(frozen=True)
class Sizes:
    """How hard the reliability tests push: small in CI, full with --long."""

    fuzz_examples: int  # per RPC
    crash_restarts: int
    load_seconds: float


@pytest.fixture(scope="session")
def sizes(request: pytest.FixtureRequest) -> Sizes:
    full = bool(request.config.getoption("--long"))
    env = os.environ
    return Sizes(
        fuzz_examples=int(env.get("RUNWIRE_FUZZ_EXAMPLES") or (500 if full else 25)),
        crash_restarts=int(env.get("RUNWIRE_CRASH_RESTARTS") or (20 if full else 3)),
        load_seconds=float(env.get("RUNWIRE_LOAD_SECONDS") or (60 if full else 15)),
    )


def make_settings(db_path: Path, **overrides: Any) -> Settings:
    return Settings.load(
        {
            "listen_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "database_url": f"sqlite:///{db_path}",
            **overrides,
        },
        environ={},
    )


@contextmanager
def fresh_postgres_database(base_url: str) -> Iterator[str]:
    """A new, empty database on the server of `base_url`, dropped afterwards."""
    name = f"runwire_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest_asyncio.fixture(scope="session", params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """The server every API test talks to: once on SQLite, once on PostgreSQL when
    RUNWIRE_TEST_POSTGRES_URL names one (`.ci/run` sets it). Retention's background passes
    are left to the servers of the retention tests: here one could land in the middle of a test
    that counts the statements the server runs."""
    db_path = tmp_path_factory.mktemp("server") / "runwire.db"
    quiet = {"retention_interval_seconds": 86_400, "lease_check_seconds": 86_400}
    if request.param == "sqlite":
        async with serving(make_settings(db_path, **quiet)) as running:
            yield running
        return
    base_url = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base_url:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    with fresh_postgres_database(base_url) as url:
        async with serving(make_settings(db_path, database_url=url, **quiet)) as running:
            yield running


@pytest.fixture
def server_factory(
    tmp_path: Path,
) -> Callable[..., AbstractAsyncContextManager[RunningServer]]:
    """Start an extra server with its own database and settings."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[RunningServer]:
        return serving(make_settings(tmp_path / "extra.db", **overrides))

    return factory


@pytest_asyncio.fixture(scope="session")
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture(scope="session")
def flows(channel: grpc.aio.Channel) -> flow_service_pb2_grpc.FlowServiceAsyncStub:
    return flow_service_pb2_grpc.FlowServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def deployments(
    channel: grpc.aio.Channel,
) -> deployment_service_pb2_grpc.DeploymentServiceAsyncStub:
    return deployment_service_pb2_grpc.DeploymentServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def runs(channel: grpc.aio.Channel) -> flow_run_service_pb2_grpc.FlowRunServiceAsyncStub:
    return flow_run_service_pb2_grpc.FlowRunServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def task_runs(channel: grpc.aio.Channel) -> task_run_service_pb2_grpc.TaskRunServiceAsyncStub:
    return task_run_service_pb2_grpc.TaskRunServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def logs(channel: grpc.aio.Channel) -> log_service_pb2_grpc.LogServiceAsyncStub:
    return log_service_pb2_grpc.LogServiceStub(channel)  # type: ignore[return-value]


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int
    lines: list[dict[str, Any]]
    # The HTTP edge's base URL (Connect and gRPC-Web), as its listening line gives it; None
    # when the server was started with `--http-address off`.
    http_url: str | None = None

    reader: threading.Thread | None = None

    def drain_output(self) -> None:
        """Keep reading the server's log lines (into `lines`) so that a full pipe never blocks
        a long-running server."""
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                if line.startswith("{"):
                    self.lines.append(json.loads(line))

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        if self.reader is None:
            out, _ = self.process.communicate(timeout=30)
            self.lines += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        else:
            self.process.wait(timeout=30)
            self.reader.join(timeout=30)
        return self.process.returncode


def free_port() -> int:
    """A loopback port free now, for a server that must come back on the same address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server_process(
    database_url: str, *extra: str, address: str = "127.0.0.1:0"
) -> ServerProcess:
    """Run `runwire server start` as a user would, and wait until it listens."""
    env = {**os.environ, "RUNWIRE_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        [
            str(RUNWIRE_CLI),
            "server",
            "start",
            "--listen-address",
            address,
            "--database-url",
            database_url,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    lines: list[dict[str, Any]] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            event = json.loads(line)
            lines.append(event)
            if event.get("event") == "server.listening":
                return ServerProcess(process, int(event["port"]), lines, event.get("http"))
    process.kill()
    raise RuntimeError(f"server process did not start: {lines}")


GUARDED_TOKEN = "rwt_interop_write_token"


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server process that requires tokens (GUARDED_TOKEN may write), as a production server
    would: for clients written in other languages."""
    tmp = tmp_path_factory.mktemp("guarded")
    tokens = tmp / "tokens"
    tokens.write_text(auth.tokens_file_line(GUARDED_TOKEN, "write", "interop") + "\n")
    server = start_server_process(
        f"sqlite:///{tmp / 'guarded.db'}",
        "--tokens-file",
        str(tokens),
        # Any free port for the HTTP edge too: the default one may be taken on this machine.
        "--http-address",
        "127.0.0.1:0",
    )
    yield server
    assert server.stop() == 0


@pytest.fixture
def server_process() -> Iterator[Callable[[str], int]]:
    started: list[ServerProcess] = []

    def start(database_url: str) -> int:
        started.append(start_server_process(database_url))
        return started[-1].port

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_overrides(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Settings for `server_factory`: its own SQLite file, then a fresh PostgreSQL database
    (skipped without RUNWIRE_TEST_POSTGRES_URL)."""
    if request.param == "sqlite":
        yield {}
        return
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    with fresh_postgres_database(base) as url:
        yield {"database_url": url}
