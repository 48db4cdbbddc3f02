"""`runwire flow`: list and inspect flows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from runwire.cli import _connect, _runs
from runwire.cli._app import flow_app
from runwire.cli._show import ago, as_json, time_of
from runwire.cli_output import (
    Column,
    Output,
    OutputOption,
    emit,
    emit_one,
    fitting_width,
    print_table,
    table_of,
)


@flow_app.command("ls")
@_connect.connected
def flow_ls(output: OutputOption = Output.TABLE) -> None:
    """List flows by name.

    \b
    Examples:
      runwire flow ls
      runwire flow ls -o json | jq -r '.[].name'
    """
    with _connect.client() as client:
        flows = [view.raw for view in client.list_flows()]
    columns = [
        Column("id", lambda flow: flow.id, keep=100),
        Column("name", lambda flow: flow.name, keep=90, cut=True),
        Column("tags", lambda flow: ",".join(flow.tags), keep=10, cut=True),
        Column("created", lambda flow: ago(time_of(flow, "created")), keep=50),
    ]
    emit(output, flows, columns, as_json=as_json, row_id=lambda f: f.id, none="No flows found.")


@flow_app.command("inspect")
@_connect.connected
def flow_inspect(
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="the flow's name or id")],
    output: OutputOption = Output.TABLE,
) -> None:
    """Show a flow and its latest runs.

    \b
    Examples:
      runwire flow inspect etl
    """
    from runwire.errors import InvalidArgument, NotFound
    from runwire.filters import flow_runs

    with _connect.client() as client:
        try:
            view = client.get_flow_by_name(flow)
        except NotFound:
            try:
                view = client.get_flow(flow)
            except (InvalidArgument, NotFound):
                _connect.refused(NotFound(f"no flow is named {flow!r} or has that id"))
        runs = [r.raw for r in client.list_flow_runs(flow_runs(flow_ids=[view.flow_id]), limit=5)]
    message = view.raw
    if emit_one(output, lambda: as_json(message), message.id):
        return
    print_table(
        Group(
            _runs.fields(
                [
                    ("Flow", message.name),
                    ("ID", message.id),
                    ("Tags", ", ".join(message.tags)),
                    ("Created", _runs.when(message, "created")),
                ]
            ),
            Text(),
            Text("Latest runs" if runs else "No runs", style="bold"),
            _latest(runs) if runs else Text(),
        )
    )


def _latest(runs: Sequence[Any]) -> Table:
    columns = [c for c in _runs.flow_run_columns({}) if c.header not in ("flow",) and not c.wide]
    return table_of(columns, runs, width=fitting_width(Output.TABLE))
