"""`runwire flow-run`: list, inspect and steer flow runs (watch and logs: run_watch, run_logs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.text import Text

from runwire.cli import _connect, _find, _runs
from runwire.cli._app import flow_run_app
from runwire.cli._show import as_json, moment, state_json, state_text
from runwire.cli_output import Output, OutputOption, emit, emit_one, plain, print_table, stdout
from runwire.states import StateType

if TYPE_CHECKING:
    from runwire._values import OrchestrationResult
    from runwire.client import Client

STATES = ", ".join(state.value.lower() for state in StateType)
Run = Annotated[
    str, typer.Argument(metavar="RUN", help="the run's id, the start of its id, or its name")
]


def flow_names(client: Client, flow_ids: set[str]) -> dict[str, str]:
    """The names of these flows by id, in one list call."""
    if not flow_ids:
        return {}
    return {flow.flow_id: flow.name for flow in client.list_flows(ids=sorted(flow_ids))}


@flow_run_app.command("ls")
@_connect.connected
def flow_run_ls(
    state: Annotated[
        list[StateType] | None,
        typer.Option(
            case_sensitive=False,
            metavar="STATE",
            help=f"only runs in this state ({STATES}); repeatable",
        ),
    ] = None,
    flow: Annotated[str | None, typer.Option(metavar="NAME", help="only runs of this flow")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(metavar="TAG", help="only runs with this tag; repeatable")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="only runs that started (or are expected to) since then: an ISO 8601 time "
            "such as 2026-11-01T08:00 (UTC unless it names an offset), or '2 hours ago'",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="at most this many runs")] = 20,
    output: OutputOption = Output.TABLE,
) -> None:
    """List flow runs, newest first.

    \b
    Examples:
      runwire flow-run ls --state failed --since '1 day ago'
      runwire flow-run ls --flow etl --tag nightly -o wide
      runwire flow-run ls --state scheduled -o id | xargs -n1 runwire flow-run cancel
    """
    from runwire.filters import flow_runs

    try:
        after = None if since is None else moment(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    criteria = flow_runs(states=state, flow_name=flow, tags_all=tag, started_after=after)
    with _connect.client() as client:
        runs = [view.raw for view in client.list_flow_runs(criteria, limit=limit)]
        names = (
            {}
            if output in (Output.JSON, Output.JSONL, Output.ID)
            else flow_names(client, {run.flow_id for run in runs})
        )
    emit(
        output,
        runs,
        _runs.flow_run_columns(names),
        as_json=as_json,
        row_id=lambda run: run.id,
        none="No flow runs found.",
    )


@flow_run_app.command("inspect")
@_connect.connected
def flow_run_inspect(run: Run, output: OutputOption = Output.TABLE) -> None:
    """Show a flow run: its fields, its state history and its task runs.

    \b
    Examples:
      runwire flow-run inspect 01a2256a-6f1e-7c3b-9d4e-0a1b2c3d4e5f
      runwire flow-run inspect nightly-etl-42
      runwire flow-run inspect 01a2256a -o json | jq .state
    """
    with _connect.client() as client:
        view = _find.flow_run(client, run)
        task_runs = client.task_run_messages(view.flow_run_id)
        flow_name = client.get_flow(view.flow_id).name
    message = view.raw
    if emit_one(output, lambda: _document(view, task_runs), message.id):
        return
    tree = _runs.task_tree(_runs.run_label(message), task_runs)
    print_table(
        Group(
            _runs.flow_run_fields(message, flow_name),
            Text(),
            Text("States", style="bold"),
            _runs.history(view.states),
            Text(),
            Text(
                f"Task runs  {_runs.progress(task_runs)}" if task_runs else "No task runs",
                style="bold",
            ),
            tree if task_runs else Text(),
        )
    )


def _document(view: Any, task_runs: list[Any]) -> dict[str, Any]:
    """A run's JSON: the same object as `ls` gives, with its states and task runs."""
    return {
        **as_json(view.raw),
        "states": [state_json(state) for state in view.states],
        "task_runs": [as_json(task_run) for task_run in task_runs],
    }


def _steer(run: str, change: Callable[[Client, str], OrchestrationResult]) -> None:
    """Make the state change `change(client, flow_run_id)` and say what came of it: exit
    code 0 when the run moved, 1 when the rules refused."""
    with _connect.client() as client:
        view = _find.flow_run(client, run)
        result = change(client, view.flow_run_id)
    moved = result.status == "ACCEPT" or (result.status == "REJECT" and result.written)
    name = plain(view.name)
    line = Text(f"{name} → " if moved else f"Refused: {name} stays ")
    state = result.state or view.state
    line.append_text(state_text(state.type, state.name))
    if result.reason:
        line.append(f"  ({plain(result.reason)})")
    if result.status == "WAIT" and result.delay is not None:
        line.append(f"; try again in {result.delay.total_seconds():.0f}s")
    stdout().print(line)
    if not moved:
        raise typer.Exit(1)


@flow_run_app.command("cancel")
@_connect.connected
def flow_run_cancel(
    run: Run,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="mark it Cancelled at once, past the rules: for a run that nothing will stop",
        ),
    ] = False,
) -> None:
    """Ask for a flow run to be cancelled: it moves to Cancelling, for whatever runs it to
    stop it and report Cancelled. A Scheduled run, which nothing runs yet, is Cancelled at
    once; a Pending or Running run that nothing runs any more needs --force.

    \b
    Examples:
      runwire flow-run cancel nightly-etl-42
      runwire flow-run cancel nightly-etl-42 --force
    """
    _steer(run, _force_cancel if force else lambda client, i: client.cancel_flow_run(i))


def _force_cancel(client: Client, flow_run_id: str) -> OrchestrationResult:
    from runwire import proposed_state

    cancelled = proposed_state(StateType.CANCELLED, message="Cancelled with --force")
    return client.set_flow_run_state(flow_run_id, cancelled, force=True)


@flow_run_app.command("resume")
@_connect.connected
def flow_run_resume(
    run: Run,
    run_input: Annotated[
        str | None,
        typer.Option(
            "--input",
            metavar="JSON",
            help="the input a run paused for: a JSON object, or @FILE to read one from a file",
        ),
    ] = None,
) -> None:
    """Resume a paused flow run. A run that paused for input (`pause_flow_run(wait_for_input=
    ...)`) is resumed only with input that matches the schema it waits for; otherwise it stays
    paused, with the reason, and the exit code is 1.

    \b
    Examples:
      runwire flow-run resume 01a2256a
      runwire flow-run resume release-1-4 --input '{"approved": true, "by": "ada"}'
      runwire flow-run resume release-1-4 --input @answer.json
    """
    given = None if run_input is None else _json_object(run_input, "--input")
    _steer(run, lambda client, flow_run_id: client.resume_flow_run(flow_run_id, given))


def _json_object(text: str, option: str) -> dict[str, Any]:
    """The JSON object an option gives, inline or (after @) in a file."""
    import json
    from pathlib import Path

    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            message = f"cannot read {text[1:]}: {exc.strerror}"
            raise typer.BadParameter(message, param_hint=option) from None
        except UnicodeDecodeError:
            message = f"{text[1:]} is not UTF-8 text"
            raise typer.BadParameter(message, param_hint=option) from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"is not JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object ({...})", param_hint=option)
    return value


@flow_run_app.command("retry")
@_connect.connected
def flow_run_retry(run: Run) -> None:
    """Run a finished flow run again: it goes back to Scheduled (named AwaitingRetry), as
    Prefect's `flow-run retry` does. Only runs of a deployment can be rescheduled.

    \b
    Examples:
      runwire flow-run retry nightly-etl-42
    """
    _steer(run, lambda client, flow_run_id: client.retry_flow_run(flow_run_id))


@flow_run_app.command("delete")
@_connect.connected
def flow_run_delete(run: Run) -> None:
    """Delete a flow run with its states, task runs and logs.

    \b
    Examples:
      runwire flow-run delete 01a2256a
    """
    with _connect.client() as client:
        view = _find.flow_run(client, run)
        client.delete_flow_run(view.flow_run_id)
    stdout().print(f"Deleted flow run {plain(view.name)} ({view.flow_run_id})")
