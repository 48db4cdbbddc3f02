"""What a command's run argument names: a whole id, the start of one, or a run's name.

Ids are never cut in tables, yet no one wants to type 36 characters: a unique start of an id
(ids are time-ordered, so runs made together share their first digits: give the last ones
too, or a name) or a run name picks the run. Several matches list the candidates and end
the command with exit code 1.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import typer

from runwire.cli._show import ago, state_text, time_of
from runwire.cli_output import Column, complain, stderr, table_of
from runwire.states import StateType
from runwire.v1 import filters_pb2 as f
from runwire.v1 import task_run_service_pb2

if TYPE_CHECKING:
    from runwire.client import Client
    from runwire.views import FlowRunView, TaskRunView

HEX = frozenset("0123456789abcdefABCDEF-")
# How many candidates an ambiguous argument lists.
SHOWN = 10


def _is_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) >= 32


# The longest name a run reference may be (the server's limit on names).
LONGEST = 255


def _match(ref: str, found: f.FlowRunFilter | f.TaskRunFilter) -> None:
    """Make `found` select runs whose id starts with `ref`, or whose name is `ref`."""
    if not ref.strip() or len(ref) > LONGEST:
        raise typer.BadParameter(
            f"give a run's id, the start of one, or a name of at most {LONGEST} characters",
            param_hint="RUN",
        )
    found.operator = f.FILTER_OPERATOR_OR
    found.name.any_of.values.append(ref)
    digits = ref.replace("-", "")
    if digits and HEX.issuperset(ref) and len(digits) <= 32:
        found.id.starts_with.values.append(ref)


def flow_run(client: Client, ref: str) -> FlowRunView:
    """The flow run `ref` names, with its states."""
    if _is_id(ref):
        return client.get_flow_run(ref)
    criteria = f.FlowRunCriteria()
    _match(ref, criteria.flow_runs)
    found = list(client.list_flow_runs(criteria, limit=SHOWN + 1, page_size=SHOWN + 1))
    return client.get_flow_run(_one("flow run", ref, found, lambda run: run.raw).flow_run_id)


def task_run(client: Client, ref: str) -> TaskRunView:
    """The task run `ref` names."""
    if _is_id(ref):
        return client.get_task_run(ref)
    criteria = task_run_service_pb2.TaskRunCriteria()
    _match(ref, criteria.task_runs)
    found = list(client.list_task_runs(criteria, limit=SHOWN + 1, page_size=SHOWN + 1))
    chosen: TaskRunView = _one("task run", ref, found, lambda run: run.raw)
    return chosen


def _one(kind: str, ref: str, found: Sequence[Any], raw: Callable[[Any], Any]) -> Any:
    if len(found) == 1:
        return found[0]
    if not found:
        complain("not found", f"no {kind} has an id that starts with, or a name of, {ref!r}")
        raise typer.Exit(1)
    more = "more than " if len(found) > SHOWN else ""
    complain(
        "ambiguous",
        f"{more}{min(len(found), SHOWN)} {kind}s match {ref!r}; "
        "give more of the id (its last digits differ), or the whole id:",
    )
    columns = [
        Column("id", lambda message: message.id),
        Column("name", lambda message: message.name, cut=True),
        Column(
            "state",
            lambda message: state_text(
                StateType.from_proto(message.state.type), message.state.name
            ),
        ),
        Column("created", lambda message: ago(time_of(message, "created"))),
    ]
    console = stderr()
    console.print(table_of(columns, [raw(item) for item in found[:SHOWN]], width=None), crop=False)
    raise typer.Exit(1)
