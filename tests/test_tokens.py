"""Token lifecycle: tokens that expire (tests/test_security.py covers tokens and roles)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2

from runwire.v1 import flow_run_service_pb2_grpc, flow_service_pb2, flow_service_pb2_grpc, watch_pb2
from runwire_server import auth, tokens_file
from runwire_server.server import RunningServer
from tests.helpers import ErrorDetails, details_of, expect_error
from tests.test_security import bearer, run_cli

LIST = flow_service_pb2.ListFlowsRequest()
PAST = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def line(token: str, name: str, role: str = "read", expires: datetime | None = None) -> str:
    return auth.tokens_file_line(token, role, name, expires) + "\n"


@asynccontextmanager
async def serving_tokens(
    server_factory: Any, path: Path
) -> AsyncIterator[tuple[RunningServer, grpc.aio.Channel]]:
    async with (
        server_factory(tokens_file=str(path)) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield running, channel


def watch_quickly(channel: grpc.aio.Channel, token: str) -> Any:
    """A watch stream with a heartbeat every 0.1 s: each is a message the server checks the
    stream's token before."""
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
    request = watch_pb2.WatchFlowRunsRequest(
        heartbeat_interval=duration_pb2.Duration(nanos=100_000_000)
    )
    return runs.WatchFlowRuns(request, metadata=bearer(token))


async def refused_stream(stream: Any, seconds: float) -> ErrorDetails:
    """Read the stream until the server ends it with UNAUTHENTICATED, within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await stream.read()
        except grpc.aio.AioRpcError as error:
            details = details_of(error)
            assert details.code == grpc.StatusCode.UNAUTHENTICATED, details
            return details
    stream.cancel()
    raise AssertionError(f"the stream was still open after {seconds} s")


async def test_an_expired_token_is_refused_with_its_own_reason(server_factory, tmp_path):
    path = tmp_path / "tokens"
    path.write_text(line("rwt_old", "old", expires=PAST) + line("rwt_current", "current"))
    async with serving_tokens(server_factory, path) as (_, channel):
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        refused = await expect_error(
            flows.ListFlows(LIST, metadata=bearer("rwt_old")), grpc.StatusCode.UNAUTHENTICATED
        )
        assert refused.reason == "TOKEN_EXPIRED"
        assert refused.message == "the token 'old' expired at 2024-01-02T03:04:05Z"
        assert refused.metadata == {"expiredAt": "2024-01-02T03:04:05Z"}
        stream = await expect_error(
            watch_quickly(channel, "rwt_old").read(), grpc.StatusCode.UNAUTHENTICATED
        )
        assert stream.reason == "TOKEN_EXPIRED"
        await flows.ListFlows(LIST, metadata=bearer("rwt_current"))


async def test_a_token_that_expires_while_the_server_runs_stops_working(server_factory, tmp_path):
    path = tmp_path / "tokens"
    expires = tokens_file.expiry_after(timedelta(seconds=4))
    path.write_text(line("rwt_soon", "soon", expires=expires) + line("rwt_current", "current"))
    async with serving_tokens(server_factory, path) as (running, channel):
        assert running.authenticator is not None
        generation = running.authenticator.generation
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        await flows.ListFlows(LIST, metadata=bearer("rwt_soon"))
        soon, current = watch_quickly(channel, "rwt_soon"), watch_quickly(channel, "rwt_current")
        await soon.read()
        await current.read()
        ended = await refused_stream(soon, seconds=15)
        assert datetime.now(UTC) >= expires
        assert ended.reason == "TOKEN_EXPIRED"
        refused = await expect_error(
            flows.ListFlows(LIST, metadata=bearer("rwt_soon")), grpc.StatusCode.UNAUTHENTICATED
        )
        assert refused.reason == "TOKEN_EXPIRED"
        assert tokens_file.format_time(expires) in refused.message
        # Checked at the call: the tokens were not read again.
        assert running.authenticator.generation == generation
        assert (await current.read()).WhichOneof("event") == "heartbeat"
        current.cancel()


def test_a_malformed_expiry_is_refused_at_start(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(line("rwt_a", "a") + line("rwt_b", "b").replace("\n", " expires=tomorrow\n"))
    result = run_cli(
        "server", "start", "--tokens-file", str(path),
        "--database-url", f"sqlite:///{tmp_path / 'x.db'}",
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        f"{path}:2: the fourth column must be 'expires=<UTC time>' such as "
        "'expires=2026-12-29T00:00:00Z', not 'expires=tomorrow'"
    ) in result.stderr
