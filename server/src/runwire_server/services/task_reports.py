"""Reports of task runs that a reporter ran without waiting: each is created with the id the
reporter chose and taken through its states by the task policy, many in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from runwire_server.errors import NotFound
from runwire_server.orchestration.context import FlowRunFacts, Settings, Status
from runwire_server.orchestration.task_rules import CORE_TASK_POLICY
from runwire_server.services.states import (
    Outcome,
    Proposal,
    RunService,
    current_state,
    mirror_subflow_state,
    orchestrate_run,
    pending,
)
from runwire_server.services.store import SqlStore
from runwire_server.services.task_runs import TaskRunValues, insert_task_run, read_task_run
from runwire_server.storage import models as m
from runwire_server.storage import run_rows

_TASKS = m.table_of(m.TaskRun)


@dataclass(frozen=True)
class ReportedState:
    """A state as the reporter saw it happen: the proposal and when (None: now)."""

    proposal: Proposal
    at: datetime | None


@dataclass(frozen=True)
class TaskRunReport:
    task_run_id: uuid.UUID
    values: TaskRunValues
    states: Sequence[ReportedState]
    lease_seconds: float | None = None


@dataclass(frozen=True)
class ReportResult:
    task_run_id: uuid.UUID
    created: bool
    accepted: int
    outcome: Outcome


class _BatchStore(SqlStore):
    """The store for one batch. A task's states never change its flow run's, so a flow run is
    read once a batch; and a run made in the batch without tags can hold no tag slot, so
    there is none to release."""

    def __init__(self, session: Session) -> None:
        super().__init__(session, mirror_subflow_state)
        self._flow_runs: dict[uuid.UUID, FlowRunFacts | None] = {}
        self.untagged: set[uuid.UUID] = set()

    def flow_run(self, flow_run_id: uuid.UUID) -> FlowRunFacts | None:
        if flow_run_id not in self._flow_runs:
            self._flow_runs[flow_run_id] = super().flow_run(flow_run_id)
        return self._flow_runs[flow_run_id]

    def release_tag_slots(self, run_id: uuid.UUID) -> None:
        if run_id not in self.untagged:
            super().release_tag_slots(run_id)


def report_task_runs(
    session: Session, reports: Sequence[TaskRunReport], settings: Settings
) -> list[ReportResult]:
    """What became of each report; NotFound (naming the report) for a flow run that does not
    exist, which leaves the whole batch unwritten."""
    store = _BatchStore(session)
    for i, report in enumerate(reports):
        if store.flow_run(report.values.flow_run_id) is None:
            raise NotFound("flow run", f"{report.values.flow_run_id} (reports[{i}].task_run)")
    keys = _keys(session, [report.task_run_id for report in reports])
    return [_report(session, report, keys, store, settings) for report in reports]


Key = tuple[uuid.UUID, str, str]


def _keys(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, Key]:
    """The key (flow run, task key, dynamic key) of each of `ids` that names a task run."""
    if not ids:
        return {}
    columns = (_TASKS.c.id, _TASKS.c.flow_run_id, _TASKS.c.task_key, _TASKS.c.dynamic_key)
    rows = session.connection().execute(select(*columns).where(_TASKS.c.id.in_(ids)))
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _report(
    session: Session,
    report: TaskRunReport,
    keys: dict[uuid.UUID, Key],
    store: _BatchStore,
    settings: Settings,
) -> ReportResult:
    run_id, values = report.task_run_id, report.values
    key = (values.flow_run_id, values.task_key, values.dynamic_key)
    if run_id in keys:
        return _existing(session, run_id, keys[run_id] == key)
    if not values.tags:
        store.untagged.add(run_id)
    # PENDING just before the first state, which so keeps the time it was reported with.
    first = report.states[0].at if report.states else None
    if first is not None:
        first -= timedelta(microseconds=1)
    # The run is made in this transaction, where no other writer sees it: it needs no lock,
    # and its row takes the changes of all its transitions in one update.
    unwritten: dict[str, Any] = {}
    try:
        run, created = insert_task_run(
            session,
            values,
            pending,
            settings,
            run_id=run_id,
            reported=first,
            store=store,
            unwritten=unwritten,
        )
    except IntegrityError:
        # PostgreSQL: a concurrent call made a run of this id (with another key, or the
        # key's lookup would have found it) after the batch looked; the savepoint undid ours.
        store.untagged.discard(run_id)
        return _existing(session, run_id, _keys(session, [run_id]).get(run_id) == key)
    if not created:
        store.untagged.discard(run_id)
        if run.id == run_id:  # made by a concurrent call of the same report
            return _existing(session, run_id, True)
        return _refused(
            run_id,
            f"task run {run.id} of this flow run has the task key {values.task_key!r} "
            f"and the dynamic key {values.dynamic_key!r}",
        )
    keys[run_id] = key
    accepted = 0
    outcome = Outcome(Status.ACCEPT, current_state(run), True)
    for reported in report.states:
        transition = orchestrate_run(
            session,
            run_rows.TASK,
            run,
            reported.proposal,
            CORE_TASK_POLICY,
            settings,
            initial=outcome.state,  # as written a moment ago: not read back from its row
            reported=reported.at,
            store=store,
            unwritten=unwritten,
            lease_seconds=report.lease_seconds,
        )
        outcome = Outcome.of(transition)
        if transition.status is not Status.ACCEPT:
            break
        accepted += 1
    run_rows.update_run(session.connection(), run_rows.TASK, run_id, unwritten)
    return ReportResult(run_id, True, accepted, outcome)


def _existing(session: Session, run_id: uuid.UUID, same_key: bool) -> ReportResult:
    """The answer for a report whose id names a task run already: a report made before (of
    the same key), answered with the run's state, or another run's id."""
    if not same_key:
        return _refused(run_id, f"the id {run_id} is another task run's")
    run = read_task_run(session.connection(), run_id)
    return ReportResult(run_id, False, 0, Outcome(Status.ACCEPT, current_state(run), False))


def _refused(run_id: uuid.UUID, reason: str) -> ReportResult:
    return ReportResult(run_id, False, 0, Outcome(Status.ABORT, None, False, reason))


class TaskReportService(RunService):
    async def report(self, reports: Sequence[TaskRunReport]) -> list[ReportResult]:
        """What became of each report, all of them written in one transaction."""
        return await self._db.write(lambda s: report_task_runs(s, reports, self._orchestration))
