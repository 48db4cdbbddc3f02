"""The `runwire` command and its groups; the commands live in the modules named after them."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from runwire.cli import _connect
from runwire.cli_output import command_group

app = command_group("Runwire: the state service for workflow orchestration.")
flow_run_app = command_group("Inspect, watch and steer flow runs.")
task_run_app = command_group("Inspect task runs.")
flow_app = command_group("Inspect flows.")
deployment_app = command_group("Inspect deployments.")
limit_app = command_group("Limit how many task runs of a tag run at once.")
config_app = command_group("Profiles: named connection settings, in a config file.")
app.add_typer(flow_run_app, name="flow-run")
app.add_typer(task_run_app, name="task-run")
app.add_typer(flow_app, name="flow")
app.add_typer(deployment_app, name="deployment")
app.add_typer(limit_app, name="concurrency-limit")
app.add_typer(config_app, name="config")


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"runwire {version('runwire')}")
        raise typer.Exit()


@app.callback()
@_connect.connected
def main(
    show_version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = None,
) -> None:
    """Runwire: the state service for workflow orchestration.

    The connection options go before or after the command's name.

    \b
    Exit codes: 0 success; 1 the server refused the request, or a run ended unsuccessfully
    (see `flow-run watch`); 2 bad usage or settings; 3 the server could not be reached;
    4 a wait timed out; 130 interrupted.
    """
