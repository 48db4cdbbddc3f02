"""`runwire server start` with a setting it cannot start with: one line on stderr that names
the setting and what it takes, and exit code 2 (3 for a database that does not answer)."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from runwire_server import schema
from tests.certs import make_certificates
from tests.conftest import RUNWIRE_CLI, free_port


def start(
    *args: str, env: dict[str, str] | None = None, database: str | None = None, code: int = 2
) -> str:
    """Run `runwire server start`, expect it to refuse with exit code `code`; its one line of
    stderr, after `runwire: `."""
    command = [str(RUNWIRE_CLI), "server", "start", "--listen-address", "127.0.0.1:0"]
    if database is not None:
        command += ["--database-url", database]
    result = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert lines[0].startswith("runwire: ")
    return lines[0].removeprefix("runwire: ")


@pytest.fixture
def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runwire.db'}"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_log_level_that_does_not_exist(sqlite):
    assert start("--log-level", "LOUD", database=sqlite) == (
        "--log-level/RUNWIRE_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
        "not 'LOUD'"
    )
    assert start(env={"RUNWIRE_LOG_LEVEL": "chatty"}, database=sqlite).startswith(
        "--log-level/RUNWIRE_LOG_LEVEL must be one of"
    )


def test_variables_of_the_wrong_type_or_out_of_range(sqlite):
    assert start(env={"RUNWIRE_MAX_PAGE_SIZE": "many"}, database=sqlite) == (
        "RUNWIRE_MAX_PAGE_SIZE must be a whole number, not 'many'"
    )
    assert start(env={"RUNWIRE_MIGRATE_ON_START": "maybe"}, database=sqlite) == (
        "RUNWIRE_MIGRATE_ON_START must be true or false, not 'maybe'"
    )
    assert start(env={"RUNWIRE_DATABASE_POOL_SIZE": "0"}, database=sqlite) == (
        "RUNWIRE_DATABASE_POOL_SIZE must be at least 1, not 0"
    )


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--listen-address", "nonsense"),
        ("--listen-address", "127.0.0.1:99999"),
        ("--listen-address", "127.0.0.1:"),
        ("--metrics-address", "127.0.0.1:metrics"),
    ],
)
def test_an_address_that_is_not_host_and_port(sqlite, flag, value):
    name = flag.removeprefix("--").replace("-", "_").upper()
    assert start(flag, value, database=sqlite) == (
        f"{flag}/RUNWIRE_{name} must be host:port (an IPv6 host in brackets) with a port from 0 "
        f"to 65535, 0 for any free port; not {value!r}"
    )


def test_an_address_another_program_listens_on(sqlite, busy_port):
    address = f"127.0.0.1:{busy_port}"
    assert start("--listen-address", address, database=sqlite) == (
        f"cannot listen on {address} (--listen-address/RUNWIRE_LISTEN_ADDRESS): "
        "Address already in use (by another Runwire server?)"
    )
    assert start("--metrics-address", address, database=sqlite) == (
        f"cannot serve metrics on {address} (--metrics-address/RUNWIRE_METRICS_ADDRESS): "
        "Address already in use"
    )


def test_an_address_that_is_not_this_machines(sqlite):
    # 192.0.2.0/24 is reserved for documentation: no machine has it.
    assert start(
        "--listen-address", "192.0.2.1:50051", "--allow-unauthenticated-remote", database=sqlite
    ) == (
        "cannot listen on 192.0.2.1:50051 (--listen-address/RUNWIRE_LISTEN_ADDRESS): "
        "Cannot assign requested address"
    )


@pytest.mark.parametrize(
    "url",
    ["mysql://runwire:secret@127.0.0.1/runwire", "postgresql+asyncpg://127.0.0.1/runwire"],
)
def test_a_database_the_server_does_not_speak(url):
    shown = make_url(url).render_as_string(hide_password=True)
    assert start(database=url) == (
        "--database-url/RUNWIRE_DATABASE_URL must be a SQLite or PostgreSQL URL "
        "(sqlite:///path/to/runwire.db or postgresql+psycopg://user@host:5432/runwire), "
        f"not {shown!r}"
    )
    assert "secret" not in shown


def test_a_database_url_that_does_not_parse():
    assert start(database="runwire.db") == (
        "--database-url/RUNWIRE_DATABASE_URL must be a database URL such as "
        "sqlite:///path/to/runwire.db or postgresql+psycopg://user@host:5432/runwire, "
        "not 'runwire.db'"
    )


def test_a_postgresql_database_that_does_not_exist():
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    url = make_url(base).set(database=f"runwire_missing_{uuid.uuid4().hex[:8]}")
    shown = url.render_as_string(hide_password=True)
    line = start(database=url.render_as_string(hide_password=False))
    assert line.startswith(
        f"cannot open the database at {shown} (--database-url/RUNWIRE_DATABASE_URL): "
    )
    assert f'database "{url.database}" does not exist' in line


def test_a_postgresql_server_that_does_not_answer():
    """Nothing listens there: perhaps it is still starting, so the exit code is 3, the one the
    command line gives for a server it cannot reach; a wrapper may try again later."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/runwire"
    line = start(database=url, code=3)
    assert line.startswith(
        f"cannot reach the database at {url} (--database-url/RUNWIRE_DATABASE_URL): "
    )
    assert "Connection refused" in line


def test_a_sqlite_file_that_cannot_be_made_or_is_not_a_database(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    url = f"sqlite:///{blocker}/runwire.db"
    assert start(database=url) == (
        f"cannot open the database at {url} (--database-url/RUNWIRE_DATABASE_URL): "
        f"cannot make the directory {blocker} (File exists)"
    )
    url = f"sqlite:///{blocker}"
    assert start(database=url) == (
        f"cannot open the database at {url} (--database-url/RUNWIRE_DATABASE_URL): "
        "file is not a database"
    )


def test_a_database_made_by_a_newer_server(sqlite):
    engine = create_engine(sqlite)
    schema.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00000000001'"))
    engine.dispose()
    assert start(database=sqlite) == (
        f"the database at {sqlite} is at schema version f00000000001, which this server does "
        f"not know (it needs {schema.head()}): a newer Runwire made it; run that version or a "
        "later one"
    )


def test_tls_files_that_cannot_be_read_or_do_not_fit(sqlite, tmp_path: Path):
    certificates = make_certificates(tmp_path)
    server = ["--tls-cert-file", str(certificates.server.cert)]
    missing = tmp_path / "missing.key"
    assert start(*server, "--tls-key-file", str(missing), database=sqlite) == (
        f"--tls-key-file/RUNWIRE_TLS_KEY_FILE: cannot read {missing}: No such file or directory"
    )
    # The client's key belongs to another certificate.
    assert start(*server, "--tls-key-file", str(certificates.client.key), database=sqlite) == (
        f"--tls-key-file/RUNWIRE_TLS_KEY_FILE: {certificates.client.key} is not the key of the "
        f"certificate in {certificates.server.cert} (--tls-cert-file/RUNWIRE_TLS_CERT_FILE)"
    )
    # A key where the certificate belongs.
    mixed_up = ["--tls-cert-file", str(certificates.server.key)]
    assert start(*mixed_up, "--tls-key-file", str(certificates.server.key), database=sqlite) == (
        f"--tls-cert-file/RUNWIRE_TLS_CERT_FILE: {certificates.server.key} holds no PEM certificate"
    )
    key = ["--tls-key-file", str(certificates.server.key)]
    assert start(*server, *key, "--tls-client-ca-file", str(missing), database=sqlite) == (
        f"--tls-client-ca-file/RUNWIRE_TLS_CLIENT_CA_FILE: cannot read {missing}: "
        "No such file or directory"
    )


def test_a_tokens_file_that_cannot_be_read(sqlite, tmp_path: Path):
    missing = tmp_path / "tokens"
    assert start("--tokens-file", str(missing), database=sqlite) == (
        f"--tokens-file/RUNWIRE_TOKENS_FILE: cannot read {missing}: No such file or directory"
    )
