"""`runwire flow-run logs`: a run's log lines, with the task run that wrote each."""

from __future__ import annotations

import enum
import json
import logging
import sys
from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runwire.cli import _connect, _find
from runwire.cli._app import flow_run_app
from runwire.cli._show import iso, log_line
from runwire.cli.flow_runs import Run
from runwire.cli_output import Output, OutputOption, complain, json_line, stderr, stdout

if TYPE_CHECKING:
    from runwire.client import Client


class Level(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@flow_run_app.command("logs")
@_connect.connected
def flow_run_logs(
    run: Run,
    level: Annotated[
        Level | None,
        typer.Option(
            case_sensitive=False,
            metavar="LEVEL",
            help="only lines at this level or above: debug, info, warning, error or critical",
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="only the lines of this task run (name or key); repeatable"
        ),
    ] = None,
    head: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="only the first N lines")
    ] = None,
    tail: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="only the last N lines")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new lines until the run ends")
    ] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Print a flow run's logs, oldest first: time, level, task run and message.

    \b
    Examples:
      runwire flow-run logs nightly-etl-42 --level warning
      runwire flow-run logs 01a2256a --task extract --tail 20
      runwire flow-run logs 01a2256a -f -o jsonl | jq -r .message
    """
    if output in (Output.WIDE, Output.ID):
        raise typer.BadParameter("logs print as table, json or jsonl", param_hint="--output")
    if follow and output is Output.JSON:
        # One JSON document cannot be printed before the run ends; JSON lines can.
        raise typer.BadParameter("--follow prints -o jsonl, not json", param_hint="--output")
    if head is not None and (tail is not None or follow):
        raise typer.BadParameter(
            "--head goes with neither --tail nor --follow", param_hint="--head"
        )
    minimum = None if level is None else logging.getLevelNamesMapping()[level.name]
    with _connect.client() as client:
        view = _find.flow_run(client, run)
        task_runs = client.task_run_messages(view.flow_run_id)
        names = {t.id: t.name or t.task_key for t in task_runs}
        printer = _Printer(output, names, follow=follow)
        if follow:
            # The task runs may not exist yet: lines are matched to them as they come.
            wanted = None if task is None else set(task)
            _follow(client, view.flow_run_id, printer, minimum, wanted, tail)
        else:
            chosen = None if task is None else _tasks(task_runs, task)
            lines = client.list_logs(
                view.flow_run_id,
                level_at_least=minimum,
                task_run_ids=chosen,
                newest_first=tail is not None,
                limit=head or tail,
            )
            entries = list(lines)
            for entry in reversed(entries) if tail is not None else entries:
                printer.line(
                    entry.timestamp, entry.level, entry.task_run_id, entry.name, entry.message
                )
        printer.close()


def _tasks(task_runs: list[Any], wanted: list[str]) -> list[str]:
    chosen = [t.id for t in task_runs if {t.name, t.task_key, t.id} & set(wanted)]
    if not chosen:
        known = ", ".join(sorted({t.name or t.task_key for t in task_runs})) or "none"
        complain(
            "not found",
            f"no task run of this run is named {' or '.join(wanted)!r} (it has: {known})",
        )
        raise typer.Exit(1)
    return chosen


def _follow(
    client: Client,
    flow_run_id: str,
    printer: _Printer,
    minimum: int | None,
    wanted: set[str] | None,
    tail: int | None,
) -> None:
    """Print the lines so far (the last `tail` of them), then new ones until the run ends;
    `wanted`: only those of task runs with these names, keys or ids."""
    keys: dict[str, set[str]] = {}

    def chosen(task_run_id: str) -> bool:
        if wanted is None:
            return True
        if not task_run_id:
            return False
        if task_run_id not in keys:
            task_run = client.get_task_run(task_run_id)
            keys[task_run_id] = {task_run_id, task_run.name, task_run.task_slug}
        return bool(keys[task_run_id] & wanted)

    replayed: list[Any] = []
    live = False
    for message in client.watch(flow_run_id, stream_states=False, after_cursor=0):
        kind = message.WhichOneof("event")
        if kind == "caught_up" and not live:
            live = True
            for log in replayed[-tail:] if tail is not None else replayed:
                printer.log(log)
        if kind != "log":
            continue
        log = message.log
        if (minimum is not None and log.level < minimum) or not chosen(log.task_run_id):
            continue
        printer.learn(client, log.task_run_id)
        if not live:
            replayed.append(log)
        else:
            printer.log(log)
    if not live:
        for log in replayed[-tail:] if tail is not None else replayed:
            printer.log(log)


class _Printer:
    """Prints log lines as `output` asks: text lines, or JSON (one document or one line each)."""

    def __init__(self, output: Output, names: dict[str, str], *, follow: bool) -> None:
        self.output = output
        self.follow = follow
        self.names = names
        self.width = max((len(name) for name in names.values()), default=0)
        self.documents: list[dict[str, Any]] = []
        self.console = stdout()
        self.printed = 0

    def learn(self, client: Client, task_run_id: str) -> None:
        """Know the name of a task run that began after the command started."""
        if task_run_id and task_run_id not in self.names:
            task_run = client.get_task_run(task_run_id)
            self.names[task_run_id] = task_run.name or task_run.task_slug
            self.width = max(self.width, len(self.names[task_run_id]))

    def log(self, log: Any) -> None:
        from runwire.cli._show import time_of

        when = time_of(log, "timestamp")
        assert when is not None
        self.line(when, log.level, log.task_run_id, log.name, log.message)

    def line(self, when: Any, level: int, task_run_id: str, name: str, message: str) -> None:
        self.printed += 1
        level_name = logging.getLevelName(level)
        task = self.names.get(task_run_id, "")
        if self.output in (Output.JSON, Output.JSONL):
            document = {
                "timestamp": iso(when.astimezone(UTC)),
                "level": level,
                "level_name": level_name,
                "task_run_id": task_run_id,
                "task_run_name": task,
                "name": name,
                "message": message,
            }
            if self.output is Output.JSONL:
                sys.stdout.write(json_line(document))
                if self.follow:
                    sys.stdout.flush()
            else:
                self.documents.append(document)
            return
        text = log_line(when, level_name, task, self.width, message)
        if self.console.is_terminal:
            self.console.print(text)
        else:
            # Piped there is nothing to style: write the line itself, many times quicker.
            sys.stdout.write(text.plain + "\n")
            if self.follow:
                sys.stdout.flush()

    def close(self) -> None:
        if self.output is Output.JSON:
            sys.stdout.write(json.dumps(self.documents, indent=2, ensure_ascii=False) + "\n")
        elif not self.printed and self.output not in (Output.JSONL, Output.ID):
            stderr().print("No log lines.")
