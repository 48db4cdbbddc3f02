"""The `runwire` command line."""

from __future__ import annotations

from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Runwire: the state service for workflow orchestration.", no_args_is_help=True
)
server_app = typer.Typer(help="Run the Runwire server.", no_args_is_help=True)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start(
    listen_address: Annotated[
        str | None,
        typer.Option(
            help="host:port to listen on [env RUNWIRE_LISTEN_ADDRESS; default 127.0.0.1:50051]"
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL [env RUNWIRE_DATABASE_URL; default: SQLite in the user data dir]"
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR [env RUNWIRE_LOG_LEVEL]")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="console or json [env RUNWIRE_LOG_FORMAT]")
    ] = None,
) -> None:
    """Start the gRPC server; stop it with Ctrl-C or SIGTERM."""
    try:
        from runwire_server.server import main
        from runwire_server.settings import Settings
    except ImportError:
        typer.echo("The server is not installed: pip install runwire-server", err=True)
        raise typer.Exit(2) from None
    overrides: dict[str, Any] = {
        "listen_address": listen_address,
        "database_url": database_url,
        "log_level": log_level,
        "log_format": log_format,
    }
    try:
        settings = Settings.load(overrides)
    except ValueError as exc:
        typer.echo(f"invalid setting: {exc}", err=True)
        raise typer.Exit(2) from None
    main(settings)


if __name__ == "__main__":
    app()
