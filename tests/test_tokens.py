"""Token lifecycle: tokens that expire; `runwire token create --expires-in`, `list` and
`revoke`; a running server that picks up edits to its tokens file without SIGHUP
(tests/test_security.py covers tokens, roles and SIGHUP)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from typer.testing import CliRunner

from runwire import Client, Unauthenticated
from runwire.cli import app
from runwire.v1 import flow_run_service_pb2_grpc, flow_service_pb2, flow_service_pb2_grpc, watch_pb2
from runwire_server import auth, tokens_file
from runwire_server.server import RunningServer
from tests.conftest import start_server_process
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


def test_create_with_an_expiry_and_refusing_a_bad_one(tmp_path):
    path = tmp_path / "tokens"
    before = datetime.now(UTC)
    made = run_cli(
        "token", "create", "--role", "read", "--name", "ci", "--expires-in", "30d",
        "--tokens-file", str(path),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    [entry] = tokens_file.parse(path.read_text(), str(path))
    assert entry.name == "ci" and entry.role == "read" and entry.expires is not None
    assert (
        before + timedelta(days=30)
        <= entry.expires
        <= datetime.now(UTC) + timedelta(days=30, seconds=1)
    )
    assert path.read_text().rstrip().endswith(f"expires={tokens_file.format_time(entry.expires)}")
    for unit, seconds in (("90m", 5400), ("12h", 43_200), ("2w", 1_209_600), ("45s", 45)):
        assert tokens_file.parse_duration(unit) == timedelta(seconds=seconds)
    refused = run_cli(
        "token", "create", "--role", "read", "--name", "x", "--expires-in", "30x",
        "--tokens-file", str(path),
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr == (
        "--expires-in: '30x' is not a duration: give a whole number and a unit s, m, h, d or w, "
        "such as 90m, 12h or 30d\n"
    )
    assert refused.stdout == ""
    for bad in ("30", "0d", "-1d", "d", "1.5h", "30 d", "30D", "99999999999999999w"):
        result = CliRunner().invoke(
            app,
            ["token", "create", "--role", "read", "--name", "x", "--expires-in", bad,
             "--tokens-file", str(path)],
        )  # fmt: skip
        assert result.exit_code == 2, (bad, result.stderr)
        assert result.stderr.startswith("--expires-in: ") and result.stderr.count("\n") == 1
        assert result.stdout == ""
    assert [e.name for e in tokens_file.parse(path.read_text(), str(path))] == ["ci"]


def test_token_list_shows_names_roles_and_expiry_but_no_secrets(tmp_path):
    path = tmp_path / "tokens"
    made = [
        run_cli(
            "token", "create", "--role", role, "--name", name, *extra, "--tokens-file", str(path)
        )
        for role, name, extra in (
            ("write", "scheduler", ()),
            ("read", "ci", ("--expires-in", "12h")),
        )
    ]
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    secrets = [m.stdout.strip() for m in made]
    with path.open("a") as out:
        out.write("# a comment\n" + line("rwt_gone", "old-ci", expires=PAST))
    hashes = [
        part.removeprefix("sha256:") for part in path.read_text().split() if "sha256:" in part
    ]
    assert len(hashes) == 3
    forbidden = [*secrets, *hashes, "sha256", "rwt_"]

    listed = run_cli("token", "list", "--tokens-file", str(path), "-o", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    ci_expires = rows[1]["expires"]
    assert rows == [
        {"name": "scheduler", "role": "write", "expires": None, "expired": False},
        {"name": "ci", "role": "read", "expires": ci_expires, "expired": False},
        {"name": "old-ci", "role": "read", "expires": "2024-01-02T03:04:05Z", "expired": True},
    ]
    assert ci_expires.endswith("Z")
    table = run_cli("token", "list", "--tokens-file", str(path))
    assert table.returncode == 0, table.stderr
    # A borderless table: columns apart by two spaces or more.
    cells = [re.split(r"\s{2,}", text.strip()) for text in table.stdout.splitlines()[1:]]
    assert {row[0]: row[1:4] for row in cells if len(row) == 4} == {
        "scheduler": ["write", "never", "valid"],
        "ci": ["read", ci_expires, "valid"],
        "old-ci": ["read", "2024-01-02T03:04:05Z", "expired"],
    }
    for output in (listed.stdout, listed.stderr, table.stdout, table.stderr):
        assert not any(secret in output for secret in forbidden)

    missing = run_cli("token", "list", "--tokens-file", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "No such file" in missing.stderr


def test_token_revoke_removes_only_that_names_lines(tmp_path):
    path = tmp_path / "tokens"
    text = (
        "# tokens for the scheduler and CI\n"
        + line("rwt_a", "scheduler", "write")
        + "\n"
        + auth.tokens_file_line("rwt_b", "read", "ci").replace(" ci", " ci  # rotated")
        + "\n"
        + line("rwt_c", "dashboard", expires=PAST)
        + "   # indented comment\n"
        + line("rwt_d", "ci")
    )
    path.write_text(text)
    path.chmod(0o640)
    inode = path.stat().st_ino
    revoked = run_cli("token", "revoke", "ci", "--tokens-file", str(path))
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked 'ci' (2 tokens)" in revoked.stdout
    assert path.read_text() == (
        "# tokens for the scheduler and CI\n"
        + line("rwt_a", "scheduler", "write")
        + "\n"
        + line("rwt_c", "dashboard", expires=PAST)
        + "   # indented comment\n"
    )
    # Replaced by a rename, not rewritten in place, and as private as it was.
    assert path.stat().st_ino != inode
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["tokens"]

    unknown = run_cli("token", "revoke", "ci", "--tokens-file", str(path))
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == f"no token named 'ci' in {path}"

    before = path.read_text() + "sha256:abc read broken\n"
    path.write_text(before)
    broken = run_cli("token", "revoke", "scheduler", "--tokens-file", str(path))
    assert broken.returncode == 1
    assert f"{path}:6: expected 'sha256:<64 hex digits> <role> <name>'" in broken.stderr
    assert path.read_text() == before


def test_a_symlinked_tokens_file_stays_a_link(tmp_path):
    real = tmp_path / "real-tokens"
    real.write_text(line("rwt_a", "a") + line("rwt_b", "b"))
    link = tmp_path / "tokens"
    link.symlink_to(real)
    assert run_cli("token", "revoke", "a", "--tokens-file", str(link)).returncode == 0
    assert link.is_symlink()
    assert real.read_text() == line("rwt_b", "b")


async def test_a_revoked_token_ends_its_open_watch_streams(server_factory, tmp_path):
    path = tmp_path / "tokens"
    path.write_text(line("rwt_leaving", "leaving") + line("rwt_staying", "staying"))
    async with serving_tokens(server_factory, path) as (_, channel):
        leaving = watch_quickly(channel, "rwt_leaving")
        staying = watch_quickly(channel, "rwt_staying")
        await leaving.read()
        await staying.read()
        revoked = await asyncio.to_thread(
            run_cli, "token", "revoke", "leaving", "--tokens-file", str(path)
        )
        assert revoked.returncode == 0, revoked.stderr
        ended = await refused_stream(leaving, seconds=10)
        assert ended.reason == "TOKEN_REVOKED"
        assert ended.message == "the token was revoked while this stream was open"
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        refused = await expect_error(
            flows.ListFlows(LIST, metadata=bearer("rwt_leaving")), grpc.StatusCode.UNAUTHENTICATED
        )
        assert refused.reason == "TOKEN_INVALID"
        assert (await staying.read()).WhichOneof("event") == "heartbeat"
        staying.cancel()


def test_a_running_server_picks_up_edits_without_sighup(tmp_path):
    path = tmp_path / "tokens"

    def create(name: str) -> str:
        made = run_cli(
            "token", "create", "--role", "read", "--name", name, "--tokens-file", str(path)
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

    def within(seconds: float, token: str, expected: bool) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if accepted(token) == expected:
                return True
            time.sleep(0.1)
        return False

    first = create("first")
    server = start_server_process(f"sqlite:///{tmp_path / 'poll.db'}", "--tokens-file", str(path))
    server.drain_output()
    address = f"127.0.0.1:{server.port}"
    try:
        second = create("second")
        assert within(10, second, True)
        revoked = run_cli("token", "revoke", "first", "--tokens-file", str(path))
        assert revoked.returncode == 0, revoked.stderr
        assert within(10, first, False)
        assert accepted(second)
        # A broken file keeps the tokens in force, and is reported once, not at every check.
        good = path.read_text()
        path.write_text(good + line("rwt_fourth", "fourth").replace("\n", " expires=soon\n"))
        deadline = time.monotonic() + 10
        while not any(e.get("event") == "tokens.reload_failed" for e in server.lines):
            assert time.monotonic() < deadline, "the broken file was not noticed"
            time.sleep(0.1)
        time.sleep(3)
        assert accepted(second)
        # Fixed, it is read again.
        path.write_text(good + line("rwt_third", "third"))
        assert within(10, "rwt_third", True)
        assert accepted(second) and not accepted(first)
    finally:
        assert server.stop() == 0
    events = [e.get("event") for e in server.lines]
    assert events.count("tokens.reload_failed") == 1
    assert events.count("tokens.reloaded") == 3


def test_the_last_revoked_token_shuts_everyone_out(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(line("rwt_only", "only"))
    server = start_server_process(f"sqlite:///{tmp_path / 'last.db'}", "--tokens-file", str(path))
    server.drain_output()
    address = f"127.0.0.1:{server.port}"
    try:
        revoked = run_cli("token", "revoke", "only", "--tokens-file", str(path))
        assert revoked.returncode == 0, revoked.stderr
        assert "lists no token now" in revoked.stderr
        assert path.read_text() == ""
        deadline = time.monotonic() + 10
        while True:
            with Client(address, token="rwt_only", timeout=5, retries=0) as client:
                try:
                    list(client.list_flows())
                except Unauthenticated:
                    break
            assert time.monotonic() < deadline, "the revoked token still works"
            time.sleep(0.1)
        # No token left does not mean no authentication.
        with Client(address, timeout=5, retries=0) as anonymous, pytest.raises(Unauthenticated):
            list(anonymous.list_flows())
    finally:
        assert server.stop() == 0
    assert "tokens.none" in [e.get("event") for e in server.lines]
