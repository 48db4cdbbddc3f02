"""Task runs: create (idempotent), read, and state changes through the task policy."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as tf
from runwire_server.clock import now
from runwire_server.errors import FailedPrecondition, NotFound
from runwire_server.orchestration.context import Settings as OrchestrationSettings
from runwire_server.orchestration.states import TERMINAL_TYPES, State
from runwire_server.orchestration.task_rules import CORE_TASK_POLICY, MINIMAL_TASK_POLICY
from runwire_server.pages import Page, PageRequest, PageTokens
from runwire_server.run_records import TaskRunRecord
from runwire_server.services.states import (
    Outcome,
    Proposal,
    RunService,
    create_run,
    list_states,
    lock_run,
    orchestrate_run,
)
from runwire_server.services.store import SqlStore
from runwire_server.storage import filters, run_rows
from runwire_server.storage import models as m
from runwire_server.storage.paging import SortKey, choose_sort, fetch_rows
from runwire_server.storage.rows import get_or_404, require_exists, set_tags
from runwire_server.storage.run_rows import read_run

T = m.TaskRun


@dataclass
class TaskRunValues:
    """Client-settable fields of a task run, already validated."""

    flow_run_id: uuid.UUID
    task_key: str
    name: str | None = None
    dynamic_key: str = ""
    map_index: int = -1
    tags: list[str] = field(default_factory=list)
    cache_key: str | None = None
    cache_expiration: Any = None
    task_version: str | None = None
    empirical_policy: dict[str, Any] = field(default_factory=dict)
    task_inputs: dict[str, Any] = field(default_factory=dict)


_TASKS = m.table_of(T)
_BY_KEY = select(_TASKS.c.id).where(
    _TASKS.c.flow_run_id == bindparam("flow_run_id"),
    _TASKS.c.task_key == bindparam("task_key"),
    _TASKS.c.dynamic_key == bindparam("dynamic_key"),
)


def create_task_run(
    session: Session, values: TaskRunValues, initial: Proposal, settings: OrchestrationSettings
) -> tuple[TaskRunRecord, bool]:
    """The new task run, or the flow run's run of the same key and False."""
    require_exists(session, m.FlowRun, values.flow_run_id, "flow run")
    return insert_task_run(session, values, initial, settings)


def insert_task_run(
    session: Session,
    values: TaskRunValues,
    initial: Proposal,
    settings: OrchestrationSettings,
    *,
    run_id: uuid.UUID | None = None,
    reported: datetime | None = None,
    store: SqlStore | None = None,
    unwritten: dict[str, Any] | None = None,
) -> tuple[TaskRunRecord, bool]:
    """create_task_run for a flow run known to exist, with the id the client chose (if any)
    and the time its initial state was reported (see services.states.create_run)."""

    def find() -> uuid.UUID | None:
        key = {"flow_run_id": values.flow_run_id, "task_key": values.task_key}
        return session.connection().scalar(_BY_KEY, {**key, "dynamic_key": values.dynamic_key})

    row = {
        "flow_run_id": values.flow_run_id,
        "task_key": values.task_key,
        "name": values.name or f"{values.task_key}-{values.dynamic_key or '0'}",
        "dynamic_key": values.dynamic_key,
        "map_index": values.map_index,
        "cache_key": values.cache_key,
        "cache_expiration": values.cache_expiration,
        "task_version": values.task_version,
        "empirical_policy": values.empirical_policy,
        "task_inputs": values.task_inputs,
        "flow_run_run_count": 0,
    }
    if run_id is not None:
        row["id"] = run_id
    return create_run(
        session,
        run_rows.TASK,
        row,
        values.tags,
        find,
        initial,
        MINIMAL_TASK_POLICY,
        settings,
        reported=reported,
        store=store,
        unwritten=unwritten,
    )


def get_task_run(session: Session, task_run_id: uuid.UUID) -> m.TaskRun:
    return get_or_404(session, T, task_run_id, "task run")


def read_task_run(conn: Connection, task_run_id: uuid.UUID) -> TaskRunRecord:
    """The run with its tags and state, in one statement (see Database.read_one)."""
    return read_run(conn, run_rows.TASK, task_run_id)


def set_task_run_state(
    session: Session,
    task_run_id: uuid.UUID,
    proposal: Proposal,
    *,
    force: bool,
    settings: OrchestrationSettings,
    lease_seconds: float | None = None,
) -> Outcome:
    run = lock_run(session, run_rows.TASK, task_run_id)
    policy = MINIMAL_TASK_POLICY if force else CORE_TASK_POLICY
    return Outcome.of(
        orchestrate_run(
            session, run_rows.TASK, run, proposal, policy, settings, lease_seconds=lease_seconds
        )
    )


def get_task_run_by_slug(
    session: Session, flow_run_id: uuid.UUID, task_slug: str, map_index: int
) -> TaskRunRecord:
    require_exists(session, m.FlowRun, flow_run_id, "flow run")
    statement = run_rows.select_runs(run_rows.TASK).where(
        T.flow_run_id == flow_run_id, T.task_key == task_slug, T.map_index == map_index
    )
    rows = _load(session.connection(), statement.limit(2))
    if not rows:
        raise NotFound("task run", f"{task_slug}[{map_index}] in flow run {flow_run_id}")
    if len(rows) > 1:
        raise FailedPrecondition(
            "AMBIGUOUS_TASK_SLUG",
            f"several task runs of {task_slug!r} with map index {map_index} ran in this flow "
            "run (they differ by dynamic_key); look them up by id",
            {"taskSlug": task_slug},
        )
    return rows[0]


def _expected_start(run: TaskRunRecord) -> datetime:
    return run.expected_start_time or run.created


_SORTS: dict[int, SortKey] = {
    tf.TASK_RUN_SORT_UNSPECIFIED: SortKey(T.id, True),
    tf.TASK_RUN_SORT_ID_DESC: SortKey(T.id, True),
    tf.TASK_RUN_SORT_ID_ASC: SortKey(T.id, False),
    tf.TASK_RUN_SORT_EXPECTED_START_TIME_ASC: SortKey(
        T.id, False, m.TASK_RUN_EXPECTED_START, _expected_start, never_null=True
    ),
    tf.TASK_RUN_SORT_EXPECTED_START_TIME_DESC: SortKey(
        T.id, True, m.TASK_RUN_EXPECTED_START, _expected_start, never_null=True
    ),
    tf.TASK_RUN_SORT_NEXT_SCHEDULED_START_TIME_ASC: SortKey(
        T.id, False, T.next_scheduled_start_time, lambda r: r.next_scheduled_start_time
    ),
    tf.TASK_RUN_SORT_END_TIME_DESC: SortKey(T.id, True, T.end_time, lambda r: r.end_time),
    tf.TASK_RUN_SORT_NAME_ASC: SortKey(T.id, False, T.name, lambda r: r.name),
    tf.TASK_RUN_SORT_NAME_DESC: SortKey(T.id, True, T.name, lambda r: r.name),
    tf.TASK_RUN_SORT_MAP_INDEX_ASC: SortKey(T.id, False, T.map_index, lambda r: r.map_index),
    tf.TASK_RUN_SORT_MAP_INDEX_DESC: SortKey(T.id, True, T.map_index, lambda r: r.map_index),
}


def _matching(criteria: Any) -> Any:
    clause = filters.task_run_criteria(criteria)
    statement = run_rows.select_runs(run_rows.TASK)
    return statement if clause is None else statement.where(clause)


def _load(conn: Connection, statement: Any) -> list[TaskRunRecord]:
    return run_rows.load_records(conn, run_rows.TASK, statement)


def list_task_runs(
    conn: Connection, criteria: Any, sort: int, page: PageRequest, tokens: PageTokens
) -> Page[TaskRunRecord]:
    sort_key = choose_sort(_SORTS, sort)
    return fetch_rows(conn, _matching(criteria), sort_key, page, tokens, _load)


def count_task_runs(session: Session, criteria: Any) -> int:
    clause = filters.task_run_criteria(criteria)
    statement = select(func.count()).select_from(T)
    if clause is not None:
        statement = statement.where(clause)
    return int(session.scalar(statement) or 0)


UPDATABLE = frozenset({"name", "tags"})


def update_task_run(session: Session, task_run_id: uuid.UUID, changes: dict[str, Any]) -> None:
    run = get_task_run(session, task_run_id)
    for name, value in changes.items():
        if name == "tags":
            set_tags(run, m.TaskRunTag, value)
        else:
            setattr(run, name, value)
    run.updated = now()
    session.flush()


def delete_task_run(session: Session, task_run_id: uuid.UUID) -> None:
    session.delete(get_task_run(session, task_run_id))


def mapped_children(session: Session, parent: m.TaskRun) -> Sequence[m.TaskRun]:
    return session.scalars(
        select(T)
        .where(
            T.flow_run_id == parent.flow_run_id,
            T.task_key == parent.task_key,
            T.map_index >= 0,
        )
        .order_by(T.map_index, T.id)
    ).all()


def task_run_result(
    session: Session, task_run_id: uuid.UUID
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The result of a finished task run, or for a mapped parent its children's, in map order."""
    run = get_task_run(session, task_run_id)
    if run.map_index == -1:
        children = mapped_children(session, run)
        if children:
            return None, [_finished_result(child, f"child {child.map_index}") for child in children]
    return _finished_result(run, "task run"), []


def _finished_result(run: m.TaskRun, what: str) -> dict[str, Any]:
    state = run.state
    if state is None or state.type not in _FINISHED:
        raise FailedPrecondition(
            "TASK_RUN_NOT_FINISHED",
            f"{what} {run.id} is {run.state_type or 'without a state'}; "
            "a result can be read once it is finished",
            {"taskRunId": str(run.id)},
        )
    if not state.result:
        raise FailedPrecondition(
            "TASK_RUN_HAS_NO_RESULT",
            f"{what} {run.id} finished without a stored result",
            {"taskRunId": str(run.id)},
        )
    return state.result


_FINISHED = frozenset(t.value for t in TERMINAL_TYPES)


def flow_run_graph(session: Session, flow_run_id: uuid.UUID) -> list[TaskRunRecord]:
    require_exists(session, m.FlowRun, flow_run_id, "flow run")
    statement = run_rows.select_runs(run_rows.TASK).where(T.flow_run_id == flow_run_id)
    return _load(session.connection(), statement.order_by(T.expected_start_time, T.id))


class TaskRunService(RunService):
    """Task runs, each call in a transaction of its own (a read by id in one statement)."""

    async def create(self, values: TaskRunValues, initial: Proposal) -> tuple[TaskRunRecord, bool]:
        """The task run, made in its initial state unless its flow run already has one of the
        same key; and whether it was made."""
        return await self._db.write(
            lambda s: create_task_run(s, values, initial, self._orchestration)
        )

    async def get(self, task_run_id: uuid.UUID) -> TaskRunRecord:
        return await self._db.read_one(lambda conn: read_task_run(conn, task_run_id), by_key=True)

    async def get_by_slug(self, flow_run_id: uuid.UUID, slug: str, map_index: int) -> TaskRunRecord:
        return await self._db.read(lambda s: get_task_run_by_slug(s, flow_run_id, slug, map_index))

    async def set_state(
        self,
        task_run_id: uuid.UUID,
        proposal: Proposal,
        *,
        force: bool,
        lease_seconds: float | None = None,
    ) -> Outcome:
        """What orchestration made of the proposal. A run it puts in RUNNING holds a lease of
        `lease_seconds`, or the server's default."""
        return await self._db.write(
            lambda s: set_task_run_state(
                s,
                task_run_id,
                proposal,
                force=force,
                settings=self._orchestration,
                lease_seconds=lease_seconds,
            )
        )

    async def list_page(self, criteria: Any, sort: int, page: PageRequest) -> Page[TaskRunRecord]:
        return await self._db.read_one(
            lambda conn: list_task_runs(conn, criteria, sort, page, self._tokens)
        )

    async def count(self, criteria: Any) -> int:
        return await self._db.read(lambda s: count_task_runs(s, criteria))

    async def update(self, task_run_id: uuid.UUID, changes: dict[str, Any]) -> TaskRunRecord:
        """The task run with `changes` (of UPDATABLE fields) made."""

        def work(session: Session) -> TaskRunRecord:
            update_task_run(session, task_run_id, changes)
            return read_task_run(session.connection(), task_run_id)

        return await self._db.write(work)

    async def delete(self, task_run_id: uuid.UUID) -> None:
        await self._db.write(lambda s: delete_task_run(s, task_run_id))

    async def result(
        self, task_run_id: uuid.UUID
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """A finished run's result, or a mapped parent's children's results, in map order."""
        return await self._db.read(lambda s: task_run_result(s, task_run_id))

    async def states(self, task_run_id: uuid.UUID, page: PageRequest) -> Page[State]:
        """The run's states, oldest first."""
        return await self._db.read(lambda s: list_states(s, T, task_run_id, page, self._tokens))

    async def graph(self, flow_run_id: uuid.UUID) -> list[TaskRunRecord]:
        """The flow run's task runs, in the order they were expected to start."""
        return await self._db.read(lambda s: flow_run_graph(s, flow_run_id))
