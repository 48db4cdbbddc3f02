"""The server's commands of the `runwire` command line: `server start`, `database` and `token`.

They live with the server, and the `runwire` command (of the client distribution, which never
imports the server) finds them through the `runwire.commands` entry points that
runwire-server declares: one Typer app per command name. Imports of the server's modules stay
inside the commands, so that listing them costs the command line nothing, and gRPC is not
imported before the command line has set its logging.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from runwire.cli_output import Column, Output, OutputOption, command_group, emit, stdout

server_app = command_group("Run the Runwire server.")
database_app = command_group("Manage the server's database schema.")
token_app = command_group("Make, list and revoke API tokens in the server's tokens file.")


@server_app.command("start")
def server_start(
    listen_address: Annotated[
        str | None,
        typer.Option(
            help="host:port to listen on [env RUNWIRE_LISTEN_ADDRESS; default 127.0.0.1:50051]"
        ),
    ] = None,
    http_address: Annotated[
        str | None,
        typer.Option(
            help="host:port for Connect and gRPC-Web over HTTP, or off "
            "[env RUNWIRE_HTTP_ADDRESS; default 127.0.0.1:50080]"
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL [env RUNWIRE_DATABASE_URL; default: SQLite in the user data dir]"
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="DEBUG, INFO, WARNING, ERROR or CRITICAL [env RUNWIRE_LOG_LEVEL]"),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="console or json [env RUNWIRE_LOG_FORMAT]")
    ] = None,
    tokens_file: Annotated[
        str | None,
        typer.Option(
            help="file of hashed tokens, see `runwire token create` [env RUNWIRE_TOKENS_FILE]"
        ),
    ] = None,
    tls_cert_file: Annotated[
        str | None, typer.Option(help="server certificate (PEM) [env RUNWIRE_TLS_CERT_FILE]")
    ] = None,
    tls_key_file: Annotated[
        str | None, typer.Option(help="server certificate's key [env RUNWIRE_TLS_KEY_FILE]")
    ] = None,
    tls_client_ca_file: Annotated[
        str | None,
        typer.Option(
            help="require client certificates from this CA [env RUNWIRE_TLS_CLIENT_CA_FILE]"
        ),
    ] = None,
    allow_unauthenticated_remote: Annotated[
        bool | None,
        typer.Option(
            "--allow-unauthenticated-remote",
            help="serve a non-loopback address without tokens or mutual TLS",
        ),
    ] = None,
    metrics_address: Annotated[
        str | None,
        typer.Option(help="host:port for Prometheus /metrics [env RUNWIRE_METRICS_ADDRESS]"),
    ] = None,
) -> None:
    """Start the server (gRPC, and Connect and gRPC-Web over HTTP); stop it with Ctrl-C or
    SIGTERM."""
    from runwire_server.server import main

    overrides: dict[str, Any] = {
        "listen_address": listen_address,
        "http_address": http_address,
        "database_url": database_url,
        "log_level": log_level,
        "log_format": log_format,
        "tokens_file": tokens_file,
        "tls_cert_file": tls_cert_file,
        "tls_key_file": tls_key_file,
        "tls_client_ca_file": tls_client_ca_file,
        "allow_unauthenticated_remote": allow_unauthenticated_remote,
        "metrics_address": metrics_address,
    }
    main(overrides)  # a setting it cannot start with: one line on stderr, exit code 2


DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy URL [env RUNWIRE_DATABASE_URL; default: the server's default]"),
]


@contextmanager
def _engine(database_url: str | None) -> Iterator[Any]:
    """The database the commands work on; one that cannot be opened ends in one line, as for
    `runwire server start`."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import InterfaceError, OperationalError

    from runwire_server.server import database_error
    from runwire_server.settings import ConfigurationError, Settings
    from runwire_server.storage.database import Database

    try:
        url = Settings.load({"database_url": database_url}).database_url
        engine = Database(url).engine if url.startswith("sqlite") else create_engine(url)
        try:
            yield engine
        except (OperationalError, InterfaceError) as exc:  # could not connect
            raise database_error(url, exc) from None
        finally:
            engine.dispose()
    except ConfigurationError as exc:
        typer.echo(f"runwire: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


@database_app.command("upgrade")
def database_upgrade(
    revision: Annotated[str, typer.Argument(help="target version")] = "head",
    database_url: DatabaseUrl = None,
) -> None:
    """Apply schema migrations (the server also does this when it starts)."""
    from runwire_server import schema

    with _engine(database_url) as engine:
        schema.upgrade(engine, revision)
        version = schema.current(engine)
    stdout().print(f"database at schema version {version}", highlight=False)


@database_app.command("downgrade")
def database_downgrade(
    revision: Annotated[str, typer.Argument(help="target version, or base for an empty schema")],
    database_url: DatabaseUrl = None,
) -> None:
    """Undo schema migrations down to a version (data in dropped tables is lost)."""
    from runwire_server import schema

    with _engine(database_url) as engine:
        schema.downgrade(engine, revision)
        version = schema.current(engine)
    stdout().print(f"database at schema version {version or 'base'}", highlight=False)


@database_app.command("current")
def database_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's schema version and the one this server needs."""
    from runwire_server import schema

    with _engine(database_url) as engine:
        version = schema.current(engine)
    stdout().print(f"current {version or 'none'}; head {schema.head()}", highlight=False)


TokensFile = Annotated[str, typer.Option(help="the server's tokens file")]


@contextmanager
def _tokens_file_errors(path: str) -> Iterator[None]:
    try:
        yield
    except ValueError as exc:
        typer.echo(
            f"{exc}; fix the file first (a server keeps its current tokens while the file "
            "does not parse)",
            err=True,
        )
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"cannot use the tokens file {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="read (Get/List/Count/Watch) or write (everything)")],
    name: Annotated[str, typer.Option(help="who holds it; shown in the server's logs")],
    tokens_file: Annotated[
        str | None,
        typer.Option(help="append the token's hash to this file (the server's tokens file)"),
    ] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(
            help="expire after this long: 90m, 12h, 30d, 2w (s, m, h, d, w) [default: never]"
        ),
    ] = None,
) -> None:
    """Make a new token: print it once, and store only its hash in the tokens file."""
    from runwire_server import auth
    from runwire_server import tokens_file as tokens_files

    if role not in auth.ROLES:
        typer.echo(f"--role must be one of {', '.join(auth.ROLES)}", err=True)
        raise typer.Exit(2)
    # '#' would start a comment in the tokens file and cut the name short.
    if not name or any(c.isspace() for c in name) or "#" in name:
        typer.echo("--name must be one word, without '#'", err=True)
        raise typer.Exit(2)
    expires = None
    if expires_in is not None:
        try:
            expires = tokens_files.expiry_after(tokens_files.parse_duration(expires_in))
        except ValueError as exc:
            typer.echo(f"--expires-in: {exc}", err=True)
            raise typer.Exit(2) from None
    token = auth.new_token()
    line = auth.tokens_file_line(token, role, name, expires)
    until = "" if expires is None else f" (expires {tokens_files.format_time(expires)})"
    if tokens_file:
        with _tokens_file_errors(tokens_file):
            tokens_files.add(tokens_file, line)
        typer.echo(
            f"added {role} token {name!r}{until} to {tokens_file}; "
            "a server using the file accepts it within a few seconds",
            err=True,
        )
    else:
        typer.echo(f"add this line to the server's tokens file{until}:", err=True)
        typer.echo(line, err=True)
    typer.echo("the token (shown once; the server keeps only its hash):", err=True)
    typer.echo(token)


@token_app.command("list")
def token_list(tokens_file: TokensFile, output: OutputOption = Output.TABLE) -> None:
    """List the tokens file's names, roles and expiry (never the tokens or their hashes)."""
    from runwire_server import tokens_file as tokens_files

    with _tokens_file_errors(tokens_file):
        _, entries = tokens_files.read(tokens_file)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "name": entry.name,
            "role": entry.role,
            "expires": None if entry.expires is None else tokens_files.format_time(entry.expires),
            "expired": entry.expired(now),
        }
        for entry in entries
    ]

    columns = [
        Column("name", lambda row: row["name"], keep=10),
        Column("role", lambda row: row["role"], keep=5),
        Column("expires", lambda row: row["expires"] or "never"),
        Column("status", lambda row: "expired" if row["expired"] else "valid", keep=5),
    ]
    emit(
        output,
        rows,
        columns,
        as_json=lambda row: row,
        row_id=lambda row: row["name"],
        none=f"No tokens in {tokens_file}.",
    )


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="the token's name, as `token list` shows it")],
    tokens_file: TokensFile,
) -> None:
    """Remove every token with this name from the tokens file."""
    from runwire_server import tokens_file as tokens_files

    with _tokens_file_errors(tokens_file):
        removed, left = tokens_files.remove(tokens_file, name)
    if not removed:
        typer.echo(f"no token named {name!r} in {tokens_file}", err=True)
        raise typer.Exit(1)
    count = "1 token" if removed == 1 else f"{removed} tokens"
    typer.echo(
        f"revoked {name!r} ({count}) in {tokens_file}; "
        "a server using the file refuses it within a few seconds"
    )
    if not left:
        typer.echo(
            f"{tokens_file} lists no token now: a server using it refuses every call "
            "(but for tokens in its RUNWIRE_TOKENS)",
            err=True,
        )
