"""Flow runs and task runs as the command line shows them: table columns, the fields of one
run, and a run's task runs as a tree."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from runwire.cli._show import (
    ago,
    duration,
    run_duration,
    state_text,
    time_of,
    wall_time,
)
from runwire.cli_output import Column, plain
from runwire.states import FINISHED, StateType
from runwire.v1 import flow_run_pb2, task_run_pb2


def state_of(message: Any) -> Text:
    return state_text(StateType.from_proto(message.state.type), message.state.name)


def started(message: Any) -> str:
    """When the run started, or, before it starts, when it is expected to."""
    return ago(time_of(message, "start_time") or time_of(message, "expected_start_time"))


def flow_run_columns(flow_names: Mapping[str, str]) -> list[Column]:
    """The columns of `flow-run ls`, over FlowRun messages."""
    return [
        Column("id", lambda run: run.id, keep=100),
        Column("name", lambda run: run.name, keep=90, cut=True),
        Column("flow", lambda run: flow_names.get(run.flow_id, run.flow_id), keep=40, cut=True),
        Column("state", state_of, keep=95),
        Column("start", started, keep=70),
        Column("duration", lambda run: duration(run_duration(run)), keep=60),
        Column("tags", lambda run: ",".join(run.tags), keep=10, cut=True),
        Column("start time", lambda run: wall_time(time_of(run, "start_time")), wide=True),
        Column("end time", lambda run: wall_time(time_of(run, "end_time")), wide=True),
        Column("deployment", lambda run: run.deployment_id, wide=True),
        Column("runs", lambda run: str(run.run_count), wide=True),
    ]


def task_run_columns() -> list[Column]:
    """The columns of `task-run ls`, over TaskRun messages."""
    return [
        Column("id", lambda run: run.id, keep=100),
        Column("name", lambda run: run.name, keep=90, cut=True),
        Column("state", state_of, keep=95),
        Column("start", started, keep=70),
        Column("duration", lambda run: duration(run_duration(run)), keep=60),
        Column("flow run", lambda run: run.flow_run_id, keep=20),
        Column("task key", lambda run: run.task_key, wide=True),
        Column("tags", lambda run: ",".join(run.tags), wide=True),
        Column("start time", lambda run: wall_time(time_of(run, "start_time")), wide=True),
        Column("end time", lambda run: wall_time(time_of(run, "end_time")), wide=True),
    ]


def fields(rows: Sequence[tuple[str, str | Text]]) -> Table:
    """`name  value` lines, the names aligned; empty values are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        if value:
            grid.add_row(name, value if isinstance(value, Text) else Text(plain(value)))
    return grid


def when(message: Any, field: str) -> str:
    """A time as the user's clock shows it, and how long ago it is."""
    moment = time_of(message, field)
    return "" if moment is None else f"{wall_time(moment)} ({ago(moment)})"


def flow_run_fields(run: flow_run_pb2.FlowRun, flow_name: str) -> Table:
    state = state_of(run)
    if run.state.message:
        state.append(f"  {plain(run.state.message)}")
    return fields(
        [
            ("Flow run", run.name),
            ("ID", run.id),
            ("Flow", f"{flow_name} ({run.flow_id})"),
            ("State", state),
            (
                "Expected",
                when(run, "expected_start_time") if not run.HasField("start_time") else "",
            ),
            ("Started", when(run, "start_time")),
            ("Ended", when(run, "end_time")),
            ("Duration", duration(run_duration(run))),
            ("Runs", str(run.run_count) if run.run_count else ""),
            ("Tags", ", ".join(run.tags)),
            ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(run.labels.items()))),
            ("Parameters", _json_text(run.parameters)),
            ("Deployment", run.deployment_id),
            ("Work queue", run.work_queue_name),
            ("Parent task run", run.parent_task_run_id),
        ]
    )


def _json_text(struct: Any) -> str:
    from google.protobuf import json_format

    value = json_format.MessageToDict(struct)
    return json.dumps(value, ensure_ascii=False) if value else ""


def history(states: Sequence[Any]) -> Table:
    """A run's states, oldest first."""
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    table.add_column("TIME", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("MESSAGE", overflow="fold")
    for state in states:
        table.add_row(
            wall_time(state.timestamp),
            state_text(state.type, state.name),
            Text(plain(state.message)),
        )
    return table


def progress(task_runs: Sequence[task_run_pb2.TaskRun]) -> str:
    """How many of the task runs have finished: "Progress 3/5"."""
    done = sum(StateType.from_proto(t.state.type) in FINISHED for t in task_runs)
    return f"Progress {done}/{len(task_runs)}"


def task_tree(label: RenderableType, task_runs: Sequence[task_run_pb2.TaskRun]) -> Tree:
    """The task runs under `label`, each with its state and duration, oldest first."""
    tree = Tree(label, guide_style="bright_black")
    width = max((len(t.name or t.task_key) for t in task_runs), default=0)
    for task_run in task_runs:
        line = Text(f"{plain(task_run.name or task_run.task_key):<{width}}")
        line.append("  ")
        line.append_text(state_of(task_run))
        spent = duration(run_duration(task_run))
        if spent:
            line.append(f"  {spent}", style="bright_black")
        if task_run.state.message and StateType.from_proto(task_run.state.type) in FINISHED:
            line.append(f"  {plain(task_run.state.message)}", style="bright_black")
        tree.add(line)
    return tree


def run_label(run: flow_run_pb2.FlowRun) -> Text:
    """A flow run's line at the top of its tree."""
    line = Text(plain(run.name), style="bold")
    line.append("  ")
    line.append_text(state_of(run))
    spent = duration(run_duration(run))
    if spent:
        line.append(f"  {spent}", style="bright_black")
    return line


def stack(*parts: RenderableType) -> Group:
    return Group(*parts)
