"""`runwire deployment`: list and inspect deployments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from runwire.cli import _connect, _runs
from runwire.cli._app import deployment_app
from runwire.cli._show import as_json
from runwire.cli_output import (
    Column,
    Output,
    OutputOption,
    complain,
    emit,
    emit_one,
    print_table,
)

if TYPE_CHECKING:
    from runwire.client import Client


def _columns(flow_names: dict[str, str]) -> list[Column]:
    return [
        Column("id", lambda d: d.id, keep=100),
        Column("name", lambda d: d.name, keep=90, cut=True),
        Column("flow", lambda d: flow_names.get(d.flow_id, d.flow_id), keep=50, cut=True),
        Column("work queue", lambda d: d.work_queue_name, keep=20, cut=True),
        Column(
            "limit",
            lambda d: str(d.concurrency_limit) if d.HasField("concurrency_limit") else "",
            keep=30,
        ),
        Column("tags", lambda d: ",".join(d.tags), keep=10, cut=True),
        Column("work pool", lambda d: d.work_pool_name, wide=True),
        Column("paused", lambda d: "yes" if d.paused else "", wide=True),
    ]


@deployment_app.command("ls")
@_connect.connected
def deployment_ls(output: OutputOption = Output.TABLE) -> None:
    """List deployments by name.

    \b
    Examples:
      runwire deployment ls
      runwire deployment ls -o jsonl
    """
    from runwire.cli.flow_runs import flow_names

    with _connect.client() as client:
        found = [d.raw for d in client.list_deployments()]
        names = flow_names(client, {d.flow_id for d in found})
    emit(
        output,
        found,
        _columns(names),
        as_json=as_json,
        row_id=lambda d: d.id,
        none="No deployments found.",
    )


def _deployment(client: Client, ref: str) -> Any:
    """The deployment with this id, or the one with this name (two flows may each have a
    deployment of one name: then the command lists them and ends)."""
    import uuid

    from runwire.errors import NotFound

    try:
        uuid.UUID(ref)
    except ValueError:
        found = [d.raw for d in client.list_deployments(names=[ref])]
        if len(found) == 1:
            return found[0]
        if not found:
            _connect.refused(NotFound(f"no deployment has the id or the name {ref!r}"))
        listed = ", ".join(f"{d.id} (flow {d.flow_id})" for d in found)
        complain("ambiguous", f"{len(found)} deployments are named {ref!r}: {listed}")
        raise typer.Exit(1) from None
    return client.get_deployment(ref).raw


@deployment_app.command("inspect")
@_connect.connected
def deployment_inspect(
    deployment: Annotated[
        str, typer.Argument(metavar="DEPLOYMENT", help="the deployment's id or name")
    ],
    output: OutputOption = Output.TABLE,
) -> None:
    """Show one deployment.

    \b
    Examples:
      runwire deployment inspect etl-prod
      runwire deployment inspect 01a2256a-6f1e-7c3b-9d4e-0a1b2c3d4e5f
    """
    with _connect.client() as client:
        message = _deployment(client, deployment)
        flow_name = client.get_flow(message.flow_id).name
    if emit_one(output, lambda: as_json(message), message.id):
        return
    limit = str(message.concurrency_limit) if message.HasField("concurrency_limit") else ""
    print_table(
        _runs.fields(
            [
                ("Deployment", message.name),
                ("ID", message.id),
                ("Flow", f"{flow_name} ({message.flow_id})"),
                ("Work pool", message.work_pool_name),
                ("Work queue", message.work_queue_name),
                ("Concurrency limit", limit),
                ("Paused", "yes" if message.paused else ""),
                ("Tags", ", ".join(message.tags)),
                ("Created", _runs.when(message, "created")),
            ]
        )
    )
