"""The `runwire` command and its groups; the commands live in the modules named after them."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from runwire.cli import _connect
from runwire.cli_output import command_group

ROOT_HELP = """Runwire: the state service for workflow orchestration.

The connection options go before or after the command's name; `runwire config` keeps
them in profiles.

\b
Examples:
  runwire flow-run ls --state failed --since '1 day ago'
  runwire flow-run watch nightly-etl-42 --timeout 30m
  runwire --address grpcs://runwire.example.com flow-run inspect 01a2256a

\b
Exit codes: 0 success; 1 the server refused the request, or a run ended unsuccessfully
(see `flow-run watch`); 2 bad usage or settings; 3 the server could not be reached;
4 a wait timed out; 130 interrupted.
"""
app = command_group(ROOT_HELP)
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
    """The `runwire` command itself: its options are kept for the command that follows."""
