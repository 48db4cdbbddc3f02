"""`runwire flow-run watch`: a run's life as it happens, until it ends.

On a terminal it is a live view, as `argo watch` draws one: the run's state and how long it
has run, its task runs as a tree with their progress, and the latest log lines. Piped, it
prints one line per change. Its exit code says how the run ended, so that a script can wait
on it: 0 completed, 1 failed, crashed or cancelled (or deleted), 4 still running when
`--timeout` ran out.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from runwire.cli import _connect, _find, _runs
from runwire.cli._app import flow_run_app
from runwire.cli._show import clock, duration, log_line, run_duration, state_text
from runwire.cli.flow_runs import Run
from runwire.cli_output import plain, stderr, stdout
from runwire.states import FINISHED, State, StateType
from runwire.v1 import flow_run_pb2, task_run_pb2

if TYPE_CHECKING:
    from runwire.client import Client

# How many log lines the live view keeps on screen.
LOG_LINES = 8
TIMED_OUT = 4


class RunModel:
    """What the watch knows of the run, kept up to date from its events."""

    def __init__(self, run: flow_run_pb2.FlowRun, task_runs: list[task_run_pb2.TaskRun]):
        self.run = run
        self.task_runs = {t.id: t for t in task_runs}
        self.task_names = {t.id: t.name or t.task_key for t in task_runs}
        self.logs: deque[Text] = deque(maxlen=LOG_LINES)
        self.deleted = False

    @property
    def state_type(self) -> StateType:
        return StateType.from_proto(self.run.state.type)

    def enter(self, message: Any, proto: Any) -> State:
        """A flow or task run (`message`) entered the state `proto`: set its state and its
        times."""
        message.state.CopyFrom(proto)
        state = State.from_proto(proto)
        if state.type is StateType.RUNNING and not message.HasField("start_time"):
            message.start_time.FromDatetime(state.timestamp)
        if state.type in FINISHED:
            message.end_time.FromDatetime(state.timestamp)
        return state

    def task_run(self, client: Client, task_run_id: str) -> task_run_pb2.TaskRun:
        known = self.task_runs.get(task_run_id)
        if known is None:
            known = client.get_task_run(task_run_id).raw
            self.task_runs[task_run_id] = known
            self.task_names[task_run_id] = known.name or known.task_key
        return known

    def view(self) -> RenderableType:
        """The live view: the run's fields, its task runs as a tree, the latest log lines."""
        run = self.run
        state = state_text(self.state_type, run.state.name)
        if run.state.message:
            state.append(f"  {plain(run.state.message)}", style="bright_black")
        ordered = sorted(self.task_runs.values(), key=lambda t: t.id)
        parts: list[RenderableType] = [
            _runs.fields(
                [
                    ("Flow run", Text(plain(run.name), style="bold")),
                    ("ID", run.id),
                    ("State", state),
                    ("Started", _runs.when(run, "start_time")),
                    ("Duration", duration(run_duration(run))),
                    ("Progress", _runs.progress(ordered).removeprefix("Progress ")),
                ]
            )
        ]
        if ordered:
            parts += [Text(), _runs.task_tree(Text("Task runs", style="bold"), ordered)]
        if self.logs:
            parts += [Text(), Text("Logs", style="bold"), *self.logs]
        return Group(*parts)


def _log_line(model: RunModel, log: Any) -> Text:
    task = model.task_names.get(log.task_run_id, "") if log.task_run_id else ""
    width = max(map(len, model.task_names.values()), default=0)
    when = log.timestamp.ToDatetime(tzinfo=UTC)
    return log_line(when, logging.getLevelName(log.level), task, width, log.message)


def _change_line(when: datetime, what: str, state: State, spent: str = "") -> Text:
    line = Text(f"{clock(when)} {plain(what)} → ")
    line.append_text(state_text(state.type, state.name))
    if spent:
        line.append(f" ({spent})")
    if state.message:
        line.append(f"  {plain(state.message)}")
    return line


def apply(model: RunModel, client: Client, message: Any) -> Text | None:
    """Apply one event to the model; the line that tells it, if any."""
    kind = message.WhichOneof("event")
    if kind == "flow_run_state":
        state = model.enter(model.run, message.flow_run_state.state)
        spent = duration(run_duration(model.run)) if state.type in FINISHED else ""
        return _change_line(state.timestamp, f"flow run {model.run.name}", state, spent)
    if kind == "task_run_state":
        change = message.task_run_state
        task_run = model.task_run(client, change.task_run_id)
        state = model.enter(task_run, change.state)
        spent = duration(run_duration(task_run)) if state.type in FINISHED else ""
        name = model.task_names[change.task_run_id]
        return _change_line(state.timestamp, f"task run {name}", state, spent)
    if kind == "log":
        line = _log_line(model, message.log)
        model.logs.append(line)
        return line
    return None


def _events(client: Client, flow_run_id: str, out: queue.Queue[Any]) -> None:
    """Feed the run's events to `out`, then None (or the error that ended them)."""
    try:
        for message in client.watch(flow_run_id, include_task_runs=True, after_cursor=0):
            out.put(message)
        out.put(None)
    except BaseException as exc:
        out.put(exc)


def _deleted(client: Client, flow_run_id: str) -> bool:
    from runwire.errors import NotFound

    try:
        client.get_flow_run(flow_run_id)
    except NotFound:
        return True
    return False


DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([dhms]))+?")
UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def _seconds(text: str) -> float:
    """A duration the user typed: seconds, or units as Go and kubectl write them (90s, 10m,
    1h30m, 2d)."""
    spoken = text.strip().lower()
    try:
        seconds = float(spoken)
    except ValueError:
        parts = DURATION.findall(spoken)
        seconds = sum(float(amount) * UNITS[unit] for amount, unit in parts)
        if not parts or "".join(a + u for a, u in parts) != spoken:
            seconds = -1
    if not 0 < seconds < 10 * 365 * 86_400:  # also refuses nan and inf
        raise typer.BadParameter(
            f"{text!r} is not a duration: give seconds above 0, or 90s, 10m, 1h30m, 2d",
            param_hint="--timeout",
        )
    return seconds


@flow_run_app.command("watch")
@_connect.connected
def flow_run_watch(
    run: Run,
    timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="give up after this long (seconds, or 90s, 10m, 1h30m, 2d), with exit code 4",
        ),
    ] = None,
) -> None:
    """Follow a flow run until it ends: its state, task runs and latest logs.

    Exit code 0 when the run completes; 1 when it ends failed, crashed or cancelled, or is
    deleted; 4 when --timeout runs out first. On a terminal the view is live; piped, one line
    per change.

    \b
    Examples:
      runwire flow-run watch nightly-etl-42
      runwire flow-run watch 01a2256a --timeout 30m && echo done
    """
    limit = None if timeout is None else _seconds(timeout)
    console = stdout()
    with _connect.client() as client:
        view = _find.flow_run(client, run)
        model = RunModel(view.raw, client.task_run_messages(view.flow_run_id))
        events: queue.Queue[Any] = queue.Queue()
        threading.Thread(
            target=_events, args=(client, view.flow_run_id, events), daemon=True
        ).start()
        if console.is_terminal:
            with Live(get_renderable=model.view, console=console, refresh_per_second=4):
                ended = _follow(model, client, events, limit, console=None)
        else:
            ended = _follow(model, client, events, limit, console=console)
        if ended and model.state_type not in FINISHED:
            model.deleted = _deleted(client, view.flow_run_id)
    if not ended:
        stderr().print(f"Timed out after {limit:g}s: the run is {plain(model.run.state.name)}")
        raise typer.Exit(TIMED_OUT)
    if model.deleted:
        stdout().print(f"{plain(model.run.name)} was deleted")
        raise typer.Exit(1)
    summary = Text(f"{plain(model.run.name)} ")
    summary.append_text(state_text(model.state_type, model.run.state.name))
    summary.append(f" after {duration(run_duration(model.run)) or '0s'}")
    if model.task_runs:
        summary.append(f"  ({_runs.progress(list(model.task_runs.values()))})")
    if not console.is_terminal:
        stdout().print(summary)
    if model.state_type is not StateType.COMPLETED:
        raise typer.Exit(1)


def _follow(
    model: RunModel,
    client: Client,
    events: queue.Queue[Any],
    limit: float | None,
    *,
    console: Console | None,
) -> bool:
    """Apply events until the stream ends (True) or `limit` seconds pass (False); print each
    change on `console` when there is one."""
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        wait = None if deadline is None else max(deadline - time.monotonic(), 0)
        try:
            message = events.get(timeout=wait)
        except queue.Empty:
            return False
        if message is None:
            return True
        if isinstance(message, BaseException):
            raise message
        line = apply(model, client, message)
        if console is not None and line is not None:
            console.print(line)
