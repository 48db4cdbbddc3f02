"""Runs on the hot path, in SQLAlchemy Core: read a run whole, lock it and read what
orchestration needs, insert a run or a state, and write a run's changed columns back.

Every state change and every create passes through here. The ORM's unit of work, identity map
and relationship loading cost more than the SQL itself on these short transactions (see
BENCHMARKS.md), so these functions read and write plain rows on the transaction's connection.
Statements whose shape does not change are built once and run on the driver's cursor
(storage.direct); lists, whose statements vary with their filters, go through SQLAlchemy.
"""

from __future__ import annotations

import functools
import operator
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Select, Table, bindparam, insert, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from runwire_server.errors import NotFound
from runwire_server.run_records import (
    FlowRunRecord,
    StateRecord,
    TaskRunRecord,
)
from runwire_server.storage import models as m
from runwire_server.storage.direct import Direct
from runwire_server.storage.types import JsonDocument

RunT = TypeVar("RunT", FlowRunRecord, TaskRunRecord)


@dataclass(frozen=True)
class RunTables(Generic[RunT]):
    """The tables of one kind of run, and the statements built once over them."""

    record: type[RunT]
    label: str  # "flow run" or "task run", for NotFound
    runs: Table
    states: Table
    state_owner: str  # the states' column naming the run
    tags: Table
    tag_owner: str

    @property
    def is_flow(self) -> bool:
        return self.runs.name == "flow_runs"


FLOW = RunTables(
    FlowRunRecord,
    "flow run",
    m.table_of(m.FlowRun),
    m.table_of(m.FlowRunState),
    "flow_run_id",
    m.table_of(m.FlowRunTag),
    "flow_run_id",
)
TASK = RunTables(
    TaskRunRecord,
    "task run",
    m.table_of(m.TaskRun),
    m.table_of(m.TaskRunState),
    "task_run_id",
    m.table_of(m.TaskRunTag),
    "task_run_id",
)

_STATE_COLUMNS = ("id", "type", "name", "timestamp", "message", "state_details", "result")
_STATE_PREFIX = "state__"


def select_runs(t: RunTables[Any]) -> Select[Any]:
    """Runs joined to their current state; add a WHERE and read with load_records."""
    state_columns = [t.states.c[name].label(_STATE_PREFIX + name) for name in _STATE_COLUMNS]
    return select(t.runs, *state_columns).outerjoin(t.states, t.states.c.id == t.runs.c.state_id)


class _TagList(FunctionElement[Any]):
    """A JSON array of a tag column's values: the run's tags, read in the run's own statement."""

    type = JsonDocument
    inherit_cache = True


@compiles(_TagList, "sqlite")
def _tag_list_sqlite(element: _TagList, compiler: Any, **kw: Any) -> str:
    return f"json_group_array({compiler.process(element.clauses, **kw)})"


@compiles(_TagList, "postgresql")
def _tag_list_postgresql(element: _TagList, compiler: Any, **kw: Any) -> str:
    return f"coalesce(jsonb_agg({compiler.process(element.clauses, **kw)}), '[]'::jsonb)"


_TAGS_KEY = "tags"


def _with_tags(t: RunTables[Any], statement: Select[Any]) -> Select[Any]:
    """A select_runs statement that also reads each run's tags, as one JSON array a run."""
    owner = t.tags.c[t.tag_owner]
    tag_list = select(_TagList(t.tags.c.tag)).where(owner == t.runs.c.id).scalar_subquery()
    return statement.add_columns(tag_list.label(_TAGS_KEY))


def _one_run(t: RunTables[Any], tags: bool) -> Direct:
    statement = select_runs(t).where(t.runs.c.id == bindparam("run_id"))
    return Direct(_with_tags(t, statement) if tags else statement)


# One statement reads a run, its current state and (when asked) its tags: a single statement
# sees one snapshot, so a read by id needs no transaction around it (Database.read_one).
_ONE = {(t.runs.name, tags): _one_run(t, tags) for t in (FLOW, TASK) for tags in (True, False)}
_LOCK = {
    t.runs.name: Direct(
        select(t.runs.c.id).where(t.runs.c.id == bindparam("run_id")).with_for_update()
    )
    for t in (FLOW, TASK)
}


def read_run(
    conn: Connection,
    t: RunTables[RunT],
    run_id: uuid.UUID,
    *,
    lock: bool = False,
    tags: bool = True,
) -> RunT:
    """The run with its tags (unless `tags` is False: then they are left empty) and current
    state; NotFound if there is none.

    With `lock`, the run's row is locked first, on its own: a locking SELECT that also joined
    the current state would, on PostgreSQL, see the state as of before the wait. On SQLite the
    write transaction (BEGIN IMMEDIATE) already serializes writers.
    """
    params = {"run_id": run_id}
    locked = lock and conn.dialect.name != "sqlite"
    if locked and _LOCK[t.runs.name].first(conn, params) is None:
        raise NotFound(t.label, str(run_id))
    one = _ONE[t.runs.name, tags]
    row = one.first(conn, params)
    if row is None:
        raise NotFound(t.label, str(run_id))
    return _layout(one.keys(conn)).record(t.record, row, None)


def load_records(conn: Connection, t: RunTables[RunT], statement: Select[Any]) -> list[RunT]:
    """Run a select_runs statement, reading each run's tags in the same statement (one
    statement with a list of the page's ids costs more to build than to run)."""
    result = conn.execute(_with_tags(t, statement))
    layout = _layout(tuple(result.keys()))
    return [layout.record(t.record, row, None) for row in result.all()]


class _Layout:
    """Where a select_runs row keeps the run's columns and its state's (prefixed), worked out
    once per statement shape rather than by name for every row of a list."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.tags_at = keys.index(_TAGS_KEY) if _TAGS_KEY in keys else None
        run = [
            i
            for i, key in enumerate(keys)
            if not key.startswith(_STATE_PREFIX) and i != self.tags_at
        ]
        state = [i for i, key in enumerate(keys) if key.startswith(_STATE_PREFIX)]
        self.run_keys = [keys[i] for i in run]
        self.state_keys = [keys[i][len(_STATE_PREFIX) :] for i in state]
        self.run_values = operator.itemgetter(*run)
        self.state_values = operator.itemgetter(*state)
        self.id_at = keys.index("id")
        self.state_id_at = keys.index(_STATE_PREFIX + "id")

    def record(self, kind: type[RunT], row: Any, tags: list[str] | None) -> RunT:
        """The row's record; its tags are `tags`, or else the row's own tag list (sorted), or
        else none."""
        values = dict(zip(self.run_keys, self.run_values(row), strict=True))
        if tags is None:
            tags = [] if self.tags_at is None else sorted(row[self.tags_at])
        values["tags"] = tags
        values["state"] = (
            None
            if row[self.state_id_at] is None
            else StateRecord(dict(zip(self.state_keys, self.state_values(row), strict=True)))
        )
        return kind(values)


@functools.cache
def _layout(keys: tuple[str, ...]) -> _Layout:
    return _Layout(keys)


def insert_run(
    conn: Connection, t: RunTables[Any], values: Mapping[str, Any], tags: Sequence[str]
) -> None:
    """Insert a run and its tags. `values` gives every column that has a default (see
    new_record); the others are NULL."""
    insert_statement(t.runs, tuple(values)).execute(conn, values)
    if tags:
        insert_statement(t.tags, (t.tag_owner, "tag")).execute_many(
            conn, [{t.tag_owner: values["id"], "tag": tag} for tag in tags]
        )


@functools.cache
def insert_statement(table: Table, columns: tuple[str, ...]) -> Direct:
    """An INSERT of exactly these columns (the others take their database defaults)."""
    return Direct(insert(table).values({name: bindparam(name) for name in columns}))


@functools.cache
def _defaulted(t: RunTables[Any]) -> tuple[str, ...]:
    return tuple(c.name for c in t.runs.columns if c.default is not None)


def new_record(t: RunTables[RunT], values: Mapping[str, Any], tags: Sequence[str]) -> RunT:
    """The record of a run just inserted from `values`, as reading it back would give it."""
    row = {column.name: values.get(column.name) for column in t.runs.columns}
    defaulted = [name for name in _defaulted(t) if name not in values]
    if defaulted:  # the database would hold the default, not the None this record says
        raise ValueError(f"new {t.label} values lack columns with defaults: {defaulted}")
    return t.record({**row, "tags": sorted(tags), "state": None})


def insert_state(
    conn: Connection, t: RunTables[Any], run_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    row = {**values, t.state_owner: run_id}
    insert_statement(t.states, tuple(row)).execute(conn, row)


def update_run(
    conn: Connection, t: RunTables[Any], run_id: uuid.UUID, changes: Mapping[str, Any]
) -> None:
    if changes:
        statement = _update_statement(t, tuple(changes))
        statement.execute(conn, {**changes, "_run_id": run_id})


@functools.cache
def _update_statement(t: RunTables[Any], columns: tuple[str, ...]) -> Direct:
    # One statement per set of columns: transitions change few distinct sets of columns.
    return Direct(
        update(t.runs)
        .where(t.runs.c.id == bindparam("_run_id"))
        .values({name: bindparam(name) for name in columns})
    )
