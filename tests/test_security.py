"""Who may call: bearer tokens and roles, open health and reflection, loopback-only without
authentication, TLS and mutual TLS."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from runwire import Client, PermissionDenied, TlsMismatch, Unauthenticated
from runwire.v1 import (
    flow_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    watch_pb2,
)
from runwire_server import auth
from runwire_server.server import InsecureAddress, start
from tests.certs import make_certificates
from tests.conftest import RUNWIRE_CLI, make_settings, start_server_process
from tests.helpers import expect_error, unique

READ, WRITE = "rwt_read_token_for_tests", "rwt_write_token_for_tests"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def guarded(server_factory: Any) -> AsyncIterator[tuple[int, grpc.aio.Channel]]:
    async with (
        server_factory(tokens=f"read:{READ},write:{WRITE}") as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield running.port, channel


async def test_calls_without_a_valid_token_are_unauthenticated(guarded):
    _, channel = guarded
    flows = flow_service_pb2_grpc.FlowServiceStub(channel)
    request = flow_service_pb2.ListFlowsRequest()
    missing = await expect_error(flows.ListFlows(request), grpc.StatusCode.UNAUTHENTICATED)
    assert missing.reason == "TOKEN_MISSING"
    wrong = await expect_error(
        flows.ListFlows(request, metadata=bearer("rwt_not_a_token")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert wrong.reason == "TOKEN_INVALID"
    malformed = await expect_error(
        flows.ListFlows(request, metadata=(("authorization", f"Basic {WRITE}"),)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert malformed.reason == "TOKEN_MALFORMED"
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
    stream = runs.WatchFlowRuns(watch_pb2.WatchFlowRunsRequest())
    await expect_error(stream.read(), grpc.StatusCode.UNAUTHENTICATED)


async def test_a_read_token_reads_and_may_not_write(guarded):
    _, channel = guarded
    flows = flow_service_pb2_grpc.FlowServiceStub(channel)
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
    name = unique("guarded")
    created = await flows.CreateFlow(
        flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=name)), metadata=bearer(WRITE)
    )
    got = await flows.GetFlow(
        flow_service_pb2.GetFlowRequest(flow_id=created.flow.id), metadata=bearer(READ)
    )
    assert got.flow.name == name
    count = await runs.CountFlowRuns(
        flow_run_service_pb2.CountFlowRunsRequest(), metadata=bearer(READ)
    )
    assert count.count == 0
    denied = await expect_error(
        flows.DeleteFlow(
            flow_service_pb2.DeleteFlowRequest(flow_id=created.flow.id), metadata=bearer(READ)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert denied.reason == "ROLE_NOT_ALLOWED"
    assert denied.metadata["method"] == "runwire.v1.FlowService/DeleteFlow"
    # The refused delete changed nothing.
    await flows.GetFlow(
        flow_service_pb2.GetFlowRequest(flow_id=created.flow.id), metadata=bearer(READ)
    )
    stream = runs.WatchFlowRuns(watch_pb2.WatchFlowRunsRequest(), metadata=bearer(READ))
    first = await stream.read()
    assert first.WhichOneof("event") is not None
    stream.cancel()


async def test_health_and_reflection_need_no_token(guarded):
    _, channel = guarded
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflect.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    response = await call.read()
    await call.done_writing()
    names = {s.name for s in response.list_services_response.service}
    assert "runwire.v1.FlowRunService" in names


async def test_the_client_library_sends_its_token(guarded):
    port, _ = guarded

    def work() -> None:
        with Client(f"127.0.0.1:{port}", token=WRITE, timeout=10) as writer:
            flow = writer.create_flow(unique("client-token"))
        with Client(f"127.0.0.1:{port}", token=READ, timeout=10) as reader:
            assert reader.get_flow(flow.flow_id).name == flow.name
            with pytest.raises(PermissionDenied):
                reader.delete_flow(flow.flow_id)
        with Client(f"127.0.0.1:{port}", timeout=10) as anonymous, pytest.raises(Unauthenticated):
            anonymous.get_flow(flow.flow_id)

    await asyncio.to_thread(work)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNWIRE_CLI), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def test_tokens_made_by_the_cli_work_from_a_tokens_file(server_factory, tmp_path):
    tokens_file = tmp_path / "tokens"
    made = run_cli(
        "token", "create", "--role", "read", "--name", "ci", "--tokens-file", str(tokens_file)
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("rwt_")
    assert token not in tokens_file.read_text()  # only its hash is stored
    async with server_factory(tokens_file=str(tokens_file)) as running:
        address = f"127.0.0.1:{running.port}"
        listed = await asyncio.to_thread(
            run_cli, "flow", "ls", "--address", address, env={"RUNWIRE_API_TOKEN": token}
        )
        assert listed.returncode == 0, listed.stderr
        refused = await asyncio.to_thread(run_cli, "flow", "ls", "--address", address)
        assert refused.returncode == 1
        assert "unauthenticated" in refused.stderr


async def test_without_authentication_the_server_stays_on_loopback(tmp_path):
    exposed = make_settings(tmp_path / "a.db", listen_address="0.0.0.0:0")
    with pytest.raises(InsecureAddress, match="no authentication"):
        await start(exposed)
    for settings in (
        make_settings(tmp_path / "b.db", listen_address="0.0.0.0:0", tokens=f"write:{WRITE}"),
        make_settings(
            tmp_path / "c.db", listen_address="0.0.0.0:0", allow_unauthenticated_remote=True
        ),
    ):
        running = await start(settings)
        await running.stop(grace=0)


def test_the_cli_refuses_a_public_address_without_authentication(tmp_path):
    result = run_cli(
        "server",
        "start",
        "--listen-address",
        "0.0.0.0:0",
        "--database-url",
        f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0:0" in result.stderr
    bad = tmp_path / "tokens"
    bad.write_text("sha256:abc write ci\n")
    result = run_cli(
        "server",
        "start",
        "--tokens-file",
        str(bad),
        "--database-url",
        f"sqlite:///{tmp_path / 'y.db'}",
    )
    assert result.returncode == 2
    assert f"{bad}:1: expected 'sha256:<64 hex digits> <role> <name>'" in result.stderr


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def tls_settings(certificates: Any, **extra: Any) -> dict[str, Any]:
    return {
        "tls_cert_file": str(certificates.server.cert),
        "tls_key_file": str(certificates.server.key),
        **extra,
    }


async def test_tls(server_factory, certificates):
    async with server_factory(**tls_settings(certificates)) as running:
        address = f"127.0.0.1:{running.port}"

        def work() -> None:
            with Client(address, ca_file=str(certificates.ca), timeout=10) as secure:
                assert secure.create_flow(unique("tls")).name.startswith("tls")
            # Plain text cannot talk to a TLS port, and the client says that is why.
            with Client(address, timeout=2, retries=0) as plain, pytest.raises(TlsMismatch) as no:
                plain.list_flows().__next__()
            assert no.value.reason == TlsMismatch.SERVER_REQUIRES_TLS

        await asyncio.to_thread(work)
        listed = await asyncio.to_thread(
            run_cli, "--ca-file", str(certificates.ca), "flow", "ls", "--address", address
        )
        assert listed.returncode == 0, listed.stderr


async def test_mutual_tls(server_factory, certificates):
    settings = tls_settings(certificates, tls_client_ca_file=str(certificates.ca))
    async with server_factory(**settings) as running:
        address = f"127.0.0.1:{running.port}"

        def connect(pair: Any) -> Client:
            files = {"cert_file": str(pair.cert), "key_file": str(pair.key)} if pair else {}
            return Client(address, ca_file=str(certificates.ca), timeout=3, retries=0, **files)

        def work() -> None:
            with connect(certificates.client) as trusted:
                trusted.create_flow(unique("mtls"))
            for pair, reason in (
                (None, TlsMismatch.CLIENT_CERTIFICATE_REQUIRED),
                (certificates.stranger, TlsMismatch.CLIENT_CERTIFICATE_REJECTED),
            ):
                with connect(pair) as refused, pytest.raises(TlsMismatch) as no:
                    next(refused.list_flows())
                assert no.value.reason == reason

        await asyncio.to_thread(work)
        env = {
            "RUNWIRE_API_CA_FILE": str(certificates.ca),
            "RUNWIRE_API_CERT_FILE": str(certificates.client.cert),
            "RUNWIRE_API_KEY_FILE": str(certificates.client.key),
        }
        listed = await asyncio.to_thread(run_cli, "flow", "ls", "--address", address, env=env)
        assert listed.returncode == 0, listed.stderr


async def test_mutual_tls_counts_as_authentication_for_a_public_address(tmp_path, certificates):
    settings = make_settings(
        tmp_path / "m.db",
        listen_address="0.0.0.0:0",
        **tls_settings(certificates, tls_client_ca_file=str(certificates.ca)),
    )
    running = await start(settings)
    await running.stop(grace=0)


def test_incomplete_tls_settings_are_refused(tmp_path: Path, certificates):
    with pytest.raises(ValueError, match="set both or neither"):
        make_settings(tmp_path / "x.db", tls_cert_file=str(certificates.server.cert))
    with pytest.raises(ValueError, match="cert_file and key_file"):
        Client("127.0.0.1:1", cert_file=str(certificates.client.cert))


def test_sighup_reloads_the_tokens_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Only SIGHUP reloads: a server that also looks for edits itself would use them unasked.
    monkeypatch.setenv("RUNWIRE_TOKENS_FILE_CHECK_SECONDS", "0")
    tokens_file = tmp_path / "tokens"

    def create(name: str) -> str:
        made = run_cli(
            "token", "create", "--role", "read", "--name", name, "--tokens-file", str(tokens_file)
        )
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    def accepted(token: str) -> bool:
        with Client(address, token=token, timeout=5, retries=0) as client:
            try:
                list(client.list_flows())
            except Unauthenticated:
                return False
            return True

    def becomes(token: str, expected: bool) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if accepted(token) == expected:
                return True
            time.sleep(0.1)
        return False

    first = create("first")
    server = start_server_process(
        f"sqlite:///{tmp_path / 'hup.db'}", "--tokens-file", str(tokens_file)
    )
    address = f"127.0.0.1:{server.port}"
    try:
        second = create("second")
        assert not accepted(second)
        server.process.send_signal(signal.SIGHUP)
        assert becomes(second, True)
        # Revoke the first token.
        lines = tokens_file.read_text().splitlines()
        tokens_file.write_text(
            "\n".join(line for line in lines if not line.endswith(" first")) + "\n"
        )
        server.process.send_signal(signal.SIGHUP)
        assert becomes(first, False)
        # A broken file keeps the tokens in force.
        tokens_file.write_text("not a token line\n")
        server.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert accepted(second)
    finally:
        assert server.stop() == 0
    assert any(line.get("event") == "tokens.reload_failed" for line in server.lines)


def test_tokens_without_tls_off_loopback_draw_a_warning(tmp_path: Path):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(auth.tokens_file_line(WRITE, "write", "ops") + "\n")
    server = start_server_process(
        f"sqlite:///{tmp_path / 'w.db'}", "--tokens-file", str(tokens_file), address="0.0.0.0:0"
    )
    try:
        events = [line.get("event") for line in server.lines]
        assert "server.plaintext_tokens" in events
        assert "server.unauthenticated" not in events
    finally:
        assert server.stop() == 0
