"""ServerService.GetServerInfo: the server's version, whether it requires tokens, and the
caller's token name and role, over gRPC, over the HTTP edge (Connect JSON, as a web page sends
it) and through the client library."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from runwire import AsyncClient, Client, ServerInfo
from runwire.v1 import server_service_pb2 as pb
from runwire.v1 import server_service_pb2_grpc as pb_grpc
from runwire_server import auth
from runwire_server.server import RunningServer
from tests.certs import make_certificates
from tests.helpers import expect_error
from tests.test_security import bearer

READ, WRITE = "rwt_info_read_token", "rwt_info_write_token"
VERSION = version("runwire-server")
PATH = "/runwire.v1.ServerService/GetServerInfo"


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(
        auth.tokens_file_line(READ, "read", "dashboard")
        + "\n"
        + auth.tokens_file_line(WRITE, "write", "ci")
        + "\n"
    )
    return path


@pytest.fixture
async def guarded(server_factory: Any, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server that requires tokens: `dashboard` may read, `ci` may write."""
    async with server_factory(tokens_file=str(tokens_file(tmp_path))) as running:
        yield running


async def info_over_grpc(running: RunningServer, token: str | None = None) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.ServerServiceStub(channel)
        metadata = bearer(token) if token else None
        return await stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=metadata, timeout=10)


async def info_over_http(running: RunningServer, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(
            f"http://127.0.0.1:{running.http_port}{PATH}", json={}, headers=headers
        )


async def test_without_tokens_every_caller_may_write(server: RunningServer):
    assert VERSION
    answer = await info_over_grpc(server)
    assert answer == pb.GetServerInfoResponse(
        server_version=VERSION,
        authentication_required=False,
        caller=pb.Caller(name="", role=pb.CALLER_ROLE_WRITE),
    )
    # A token sent to a server without tokens changes nothing.
    assert await info_over_grpc(server, "rwt_anything") == answer
    over_http = await info_over_http(server)
    assert over_http.status_code == 200, over_http.text
    # Fields at their default value (false, "") are left out of protobuf's JSON.
    assert over_http.json() == {"serverVersion": VERSION, "caller": {"role": "CALLER_ROLE_WRITE"}}


async def test_a_read_token_is_told_its_name_and_that_it_may_only_read(guarded: RunningServer):
    answer = await info_over_grpc(guarded, READ)
    assert answer == pb.GetServerInfoResponse(
        server_version=VERSION,
        authentication_required=True,
        caller=pb.Caller(name="dashboard", role=pb.CALLER_ROLE_READ),
    )
    over_http = await info_over_http(guarded, READ)
    assert over_http.status_code == 200, over_http.text
    assert over_http.json() == {
        "serverVersion": VERSION,
        "authenticationRequired": True,
        "caller": {"name": "dashboard", "role": "CALLER_ROLE_READ"},
    }


async def test_a_write_token_may_write(guarded: RunningServer):
    answer = await info_over_grpc(guarded, WRITE)
    assert answer.authentication_required
    assert answer.caller == pb.Caller(name="ci", role=pb.CALLER_ROLE_WRITE)
    over_http = await info_over_http(guarded, WRITE)
    assert over_http.json()["caller"] == {"name": "ci", "role": "CALLER_ROLE_WRITE"}


async def test_tokens_of_the_environment_are_named_by_their_place(server_factory: Any):
    async with server_factory(tokens=f"write:{WRITE},read:{READ}") as running:
        answer = await info_over_grpc(running, READ)
    assert answer.authentication_required
    assert answer.caller == pb.Caller(name="env-2", role=pb.CALLER_ROLE_READ)


async def test_without_a_token_the_call_is_unauthenticated(guarded: RunningServer):
    """How a page learns it must ask for a token: as for every method."""
    missing = await expect_error(info_over_grpc(guarded), grpc.StatusCode.UNAUTHENTICATED)
    assert missing.reason == "TOKEN_MISSING"
    wrong = await expect_error(
        info_over_grpc(guarded, "rwt_not_a_token"), grpc.StatusCode.UNAUTHENTICATED
    )
    assert wrong.reason == "TOKEN_INVALID"
    over_http = await info_over_http(guarded)
    assert over_http.status_code == 401
    assert over_http.json()["code"] == "unauthenticated"


async def test_client_certificates_alone_require_no_token(server_factory: Any, tmp_path: Path):
    """A server that admits callers by their client certificate has no token to ask for: its
    callers, having got in, may write."""
    certificates = make_certificates(tmp_path)
    async with (
        server_factory(
            tls_cert_file=str(certificates.server.cert),
            tls_key_file=str(certificates.server.key),
            tls_client_ca_file=str(certificates.ca),
        ) as running,
        AsyncClient(
            f"127.0.0.1:{running.port}",
            ca_file=str(certificates.ca),
            cert_file=str(certificates.client.cert),
            key_file=str(certificates.client.key),
            timeout=10,
        ) as client,
    ):
        info = await client.server_info()
    assert info == ServerInfo(VERSION, False, "", "write", info.raw)


async def test_the_clients_give_a_value(guarded: RunningServer):
    address = f"127.0.0.1:{guarded.port}"
    async with AsyncClient(address, token=READ, timeout=10) as client:
        info = await client.server_info()
    assert info == ServerInfo(
        server_version=VERSION,
        authentication_required=True,
        caller_name="dashboard",
        role="read",
        raw=info.raw,
    )
    with pytest.raises(AttributeError):
        info.role = "write"  # type: ignore[misc]

    def blocking() -> ServerInfo:
        with Client(address, token=WRITE, timeout=10) as client:
            return client.server_info()

    written = await asyncio.to_thread(blocking)
    assert (written.caller_name, written.role) == ("ci", "write")
    assert written.raw.caller.role == pb.CALLER_ROLE_WRITE
