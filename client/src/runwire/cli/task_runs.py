"""`runwire task-run`: list and inspect task runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group
from rich.text import Text

from runwire.cli import _connect, _find, _runs
from runwire.cli._app import task_run_app
from runwire.cli._show import as_json, duration, run_duration, state_json
from runwire.cli.flow_runs import STATES
from runwire.cli_output import Output, OutputOption, emit, emit_one, plain, print_table
from runwire.states import StateType


@task_run_app.command("ls")
@_connect.connected
def task_run_ls(
    flow_run: Annotated[
        str | None,
        typer.Option(
            metavar="RUN", help="only the task runs of this flow run (id, start of id, or name)"
        ),
    ] = None,
    state: Annotated[
        list[StateType] | None,
        typer.Option(
            case_sensitive=False,
            metavar="STATE",
            help=f"only task runs in this state ({STATES}); repeatable",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="only task runs of this name")] = None,
    limit: Annotated[
        int, typer.Option(min=1, metavar="N", help="at most this many task runs")
    ] = 20,
    output: OutputOption = Output.TABLE,
) -> None:
    """List task runs, newest first.

    \b
    Examples:
      runwire task-run ls --flow-run nightly-etl-42
      runwire task-run ls --state failed -o wide
    """
    from runwire.filters import task_runs

    with _connect.client() as client:
        runs = None if flow_run is None else [_find.flow_run(client, flow_run).flow_run_id]
        criteria = task_runs(
            flow_run_ids=runs, states=state, names=None if name is None else [name]
        )
        found = [view.raw for view in client.list_task_runs(criteria, limit=limit)]
    emit(
        output,
        found,
        _runs.task_run_columns(),
        as_json=as_json,
        row_id=lambda run: run.id,
        none="No task runs found.",
    )


@task_run_app.command("inspect")
@_connect.connected
def task_run_inspect(
    task_run: Annotated[
        str, typer.Argument(help="the task run's id, the start of it, or its name")
    ],
    output: OutputOption = Output.TABLE,
) -> None:
    """Show a task run and its state history.

    \b
    Examples:
      runwire task-run inspect 01a2256b
    """
    with _connect.client() as client:
        view = _find.task_run(client, task_run)
        states = client.list_task_run_states(view.task_run_id)
    message = view.raw
    if emit_one(
        output,
        lambda: {**as_json(message), "states": [state_json(state) for state in states]},
        message.id,
    ):
        return
    state = _runs.state_of(message)
    if message.state.message:
        state.append(f"  {plain(message.state.message)}")
    print_table(
        Group(
            _runs.fields(
                [
                    ("Task run", message.name),
                    ("ID", message.id),
                    ("Task key", message.task_key),
                    ("Flow run", message.flow_run_id),
                    ("State", state),
                    ("Started", _runs.when(message, "start_time")),
                    ("Ended", _runs.when(message, "end_time")),
                    ("Duration", duration(run_duration(message))),
                    ("Runs", str(message.run_count) if message.run_count else ""),
                    ("Map index", str(message.map_index) if message.map_index >= 0 else ""),
                    ("Tags", ", ".join(message.tags)),
                ]
            ),
            Text(),
            Text("States", style="bold"),
            _runs.history(states),
        )
    )
