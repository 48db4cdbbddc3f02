"""`runwire concurrency-limit`: how many task runs of a tag may run at once."""

from __future__ import annotations

from typing import Annotated

import typer

from runwire.cli import _connect
from runwire.cli._app import limit_app
from runwire.cli._show import as_json
from runwire.cli_output import Column, Output, OutputOption, emit, plain, stdout

Tag = Annotated[str, typer.Argument(metavar="TAG", help="the tag the limit applies to")]


@limit_app.command("ls")
@_connect.connected
def limit_ls(output: OutputOption = Output.TABLE) -> None:
    """List the concurrency limits, with how many slots are taken.

    \b
    Examples:
      runwire concurrency-limit ls
    """
    with _connect.client() as client:
        found = [limit.raw for limit in client.list_concurrency_limits()]
    columns = [
        Column("tag", lambda limit: limit.tag, keep=100),
        Column("limit", lambda limit: str(limit.concurrency_limit), keep=90),
        Column("running", lambda limit: str(len(limit.active_slots)), keep=80),
        Column("task runs", lambda limit: ",".join(limit.active_slots), wide=True),
    ]
    emit(
        output,
        found,
        columns,
        as_json=as_json,
        row_id=lambda limit: limit.tag,
        none="No concurrency limits.",
    )


@limit_app.command("create")
@_connect.connected
def limit_create(
    tag: Tag,
    limit: Annotated[
        int,
        typer.Argument(metavar="LIMIT", min=0, max=2**31 - 1, help="how many may run at once"),
    ],
) -> None:
    """Limit how many task runs with this tag run at once (or change the limit).

    \b
    Examples:
      runwire concurrency-limit create database 10
    """
    with _connect.client() as client:
        made = client.set_concurrency_limit(tag, limit)
    stdout().print(f"Task runs tagged {plain(repr(made.tag))} now run at most {made.limit} at once")


@limit_app.command("delete")
@_connect.connected
def limit_delete(tag: Tag) -> None:
    """Remove a tag's concurrency limit.

    \b
    Examples:
      runwire concurrency-limit delete database
    """
    with _connect.client() as client:
        client.delete_concurrency_limit(tag)
    stdout().print(f"Removed the concurrency limit of {plain(repr(tag))}")
