"""Fixtures: a real Runwire server on a free loopback port over a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from runwire.v1 import (
    deployment_service_pb2_grpc,
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    log_service_pb2_grpc,
    task_run_service_pb2_grpc,
)
from runwire_server.server import RunningServer, serving
from runwire_server.settings import Settings


def make_settings(db_path: Path, **overrides: Any) -> Settings:
    return Settings.load(
        {"listen_address": "127.0.0.1:0", "database_url": f"sqlite:///{db_path}", **overrides},
        environ={},
    )


@pytest_asyncio.fixture(scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    db_path = tmp_path_factory.mktemp("server") / "runwire.db"
    async with serving(make_settings(db_path)) as running:
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


@pytest.fixture
def flows(channel: grpc.aio.Channel) -> flow_service_pb2_grpc.FlowServiceAsyncStub:
    return flow_service_pb2_grpc.FlowServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture
def deployments(channel: grpc.aio.Channel) -> deployment_service_pb2_grpc.DeploymentServiceAsyncStub:
    return deployment_service_pb2_grpc.DeploymentServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture
def runs(channel: grpc.aio.Channel) -> flow_run_service_pb2_grpc.FlowRunServiceAsyncStub:
    return flow_run_service_pb2_grpc.FlowRunServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture
def task_runs(channel: grpc.aio.Channel) -> task_run_service_pb2_grpc.TaskRunServiceAsyncStub:
    return task_run_service_pb2_grpc.TaskRunServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture
def logs(channel: grpc.aio.Channel) -> log_service_pb2_grpc.LogServiceAsyncStub:
    return log_service_pb2_grpc.LogServiceStub(channel)  # type: ignore[return-value]
