"""Flow runs: create (idempotent), read, list, count, update, delete, and state changes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import coolname
import jsonschema
from jsonschema import Draft202012Validator
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as f
from runwire_server.clock import now
from runwire_server.errors import InvalidArgument
from runwire_server.events import outbox
from runwire_server.events.values import RunDeleted
from runwire_server.orchestration.context import Settings as OrchestrationSettings
from runwire_server.orchestration.context import Status
from runwire_server.orchestration.flow_rules import CORE_FLOW_POLICY, MINIMAL_FLOW_POLICY
from runwire_server.orchestration.states import State, StateType
from runwire_server.pages import Page, PageRequest, PageTokens
from runwire_server.run_records import FlowRunRecord
from runwire_server.services.states import (
    Outcome,
    Proposal,
    RunService,
    create_run,
    current_state,
    list_states,
    lock_run,
    orchestrate_run,
)
from runwire_server.storage import filters, run_rows
from runwire_server.storage import models as m
from runwire_server.storage.paging import SortKey, choose_sort, fetch_rows
from runwire_server.storage.rows import (
    ensure_work_queue,
    get_or_404,
    require_exists,
    set_tags,
)
from runwire_server.storage.run_rows import read_run

R = m.FlowRun


@dataclass
class FlowRunValues:
    """Client-settable fields of a flow run, already validated."""

    flow_id: uuid.UUID
    name: str | None = None
    deployment_id: uuid.UUID | None = None
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    run_config: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    parent_task_run_id: uuid.UUID | None = None
    empirical_policy: dict[str, Any] = field(default_factory=dict)
    flow_version: str | None = None
    created_by_id: str | None = None
    created_by_type: str | None = None
    created_by_display_value: str | None = None
    infrastructure_pid: str | None = None


def generate_name() -> str:
    return str(coolname.generate_slug(2))


def create_flow_run(
    session: Session,
    values: FlowRunValues,
    initial: Proposal,
    settings: OrchestrationSettings,
) -> tuple[FlowRunRecord, bool]:
    """Create a run in its initial state, or return the run with the same idempotency key."""
    require_exists(session, m.Flow, values.flow_id, "flow")
    if values.deployment_id is not None:
        deployment = get_or_404(session, m.Deployment, values.deployment_id, "deployment")
        if deployment.flow_id != values.flow_id:
            raise InvalidArgument(
                "flow_run.deployment_id", "names a deployment of a different flow"
            )
    ensure_work_queue(session, values.work_pool_name, values.work_queue_name)

    def find() -> uuid.UUID | None:
        return session.scalar(
            select(R.id).where(
                R.flow_id == values.flow_id, R.idempotency_key == values.idempotency_key
            )
        )

    row = {
        "flow_id": values.flow_id,
        "name": values.name or generate_name(),
        "deployment_id": values.deployment_id,
        "work_pool_name": values.work_pool_name,
        "work_queue_name": values.work_queue_name,
        "parameters": values.parameters,
        "context": values.context,
        "run_config": values.run_config,
        "labels": values.labels,
        "idempotency_key": values.idempotency_key,
        "parent_task_run_id": values.parent_task_run_id,
        "empirical_policy": values.empirical_policy,
        "flow_version": values.flow_version,
        "created_by_id": values.created_by_id,
        "created_by_type": values.created_by_type,
        "created_by_display_value": values.created_by_display_value,
        "infrastructure_pid": values.infrastructure_pid,
    }
    # The initial state is forced, as the reference does: only the minimal policy applies.
    keyed = find if values.idempotency_key is not None else None
    return create_run(
        session, run_rows.FLOW, row, values.tags, keyed, initial, MINIMAL_FLOW_POLICY, settings
    )


def get_flow_run(session: Session, flow_run_id: uuid.UUID) -> m.FlowRun:
    return get_or_404(session, R, flow_run_id, "flow run")


def read_flow_run(conn: Connection, flow_run_id: uuid.UUID) -> FlowRunRecord:
    """The run with its tags and state, in one statement (see Database.read_one)."""
    return read_run(conn, run_rows.FLOW, flow_run_id)


def set_flow_run_state(
    session: Session,
    flow_run_id: uuid.UUID,
    proposal: Proposal,
    *,
    force: bool,
    settings: OrchestrationSettings,
    lease_seconds: float | None = None,
) -> Outcome:
    run = lock_run(session, run_rows.FLOW, flow_run_id)
    policy = MINIMAL_FLOW_POLICY if force else CORE_FLOW_POLICY
    return Outcome.of(
        orchestrate_run(
            session, run_rows.FLOW, run, proposal, policy, settings, lease_seconds=lease_seconds
        )
    )


def resume_flow_run(
    session: Session,
    flow_run_id: uuid.UUID,
    settings: OrchestrationSettings,
    run_input: dict[str, Any] | None = None,
) -> Outcome:
    """Propose the state that resumes a paused run: Running, or Resuming for a suspended one.
    A run that waits for input (a schema in its paused state) is resumed only with input that
    matches; the input goes into the details of the state the resume writes."""
    run = lock_run(session, run_rows.FLOW, flow_run_id)
    initial = current_state(run)
    if initial is None or initial.type is not StateType.PAUSED:
        return Outcome(Status.ABORT, initial, False, "Cannot resume a flow run that is not paused.")
    schema = initial.details.get("run_input_schema")
    if schema is not None:
        mismatch = input_mismatch(schema, run_input)
        if mismatch:
            return Outcome(Status.REJECT, initial, False, mismatch)
    given = {} if run_input is None else {"run_input": run_input}

    def proposal(at: datetime) -> State:
        if initial.details.get("pause_reschedule"):
            return State(
                type=StateType.SCHEDULED,
                name="Resuming",
                timestamp=at,
                details={"scheduled_time": at, **given},
            )
        return State(type=StateType.RUNNING, name="Running", timestamp=at, details=given)

    return Outcome.of(
        orchestrate_run(
            session, run_rows.FLOW, run, proposal, CORE_FLOW_POLICY, settings, initial=initial
        )
    )


def input_mismatch(schema: dict[str, Any], run_input: dict[str, Any] | None) -> str:
    """Why `run_input` does not match the paused run's schema; empty when it does."""
    if run_input is None:
        return "This run waits for input: resume it with run_input matching its schema."
    validator = jsonschema.validators.validator_for(schema, default=Draft202012Validator)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(run_input))
    if error is None:
        return ""
    where = "".join(f"[{p!r}]" for p in error.absolute_path) or "the input"
    return f"Run input does not match its schema: {error.message} (at {where})."


def _effective_start(run: FlowRunRecord) -> datetime:
    return run.start_time or run.expected_start_time or run.created


_SORTS: dict[int, SortKey] = {
    f.FLOW_RUN_SORT_UNSPECIFIED: SortKey(R.id, True),
    f.FLOW_RUN_SORT_ID_DESC: SortKey(R.id, True),
    f.FLOW_RUN_SORT_ID_ASC: SortKey(R.id, False),
    f.FLOW_RUN_SORT_START_TIME_ASC: SortKey(
        R.id, False, m.FLOW_RUN_EFFECTIVE_START, _effective_start, never_null=True
    ),
    f.FLOW_RUN_SORT_START_TIME_DESC: SortKey(
        R.id, True, m.FLOW_RUN_EFFECTIVE_START, _effective_start, never_null=True
    ),
    f.FLOW_RUN_SORT_EXPECTED_START_TIME_ASC: SortKey(
        R.id, False, R.expected_start_time, lambda r: r.expected_start_time
    ),
    f.FLOW_RUN_SORT_EXPECTED_START_TIME_DESC: SortKey(
        R.id, True, R.expected_start_time, lambda r: r.expected_start_time
    ),
    f.FLOW_RUN_SORT_NEXT_SCHEDULED_START_TIME_ASC: SortKey(
        R.id, False, R.next_scheduled_start_time, lambda r: r.next_scheduled_start_time
    ),
    f.FLOW_RUN_SORT_NEXT_SCHEDULED_START_TIME_DESC: SortKey(
        R.id, True, R.next_scheduled_start_time, lambda r: r.next_scheduled_start_time
    ),
    f.FLOW_RUN_SORT_END_TIME_ASC: SortKey(R.id, False, R.end_time, lambda r: r.end_time),
    f.FLOW_RUN_SORT_END_TIME_DESC: SortKey(R.id, True, R.end_time, lambda r: r.end_time),
    f.FLOW_RUN_SORT_NAME_ASC: SortKey(R.id, False, R.name, lambda r: r.name),
    f.FLOW_RUN_SORT_NAME_DESC: SortKey(R.id, True, R.name, lambda r: r.name),
}


def _matching(clause: filters.Clause | None) -> Any:
    statement = run_rows.select_runs(run_rows.FLOW)
    return statement if clause is None else statement.where(clause)


def _load(conn: Connection, statement: Any) -> list[FlowRunRecord]:
    return run_rows.load_records(conn, run_rows.FLOW, statement)


def list_flow_runs(
    conn: Connection,
    clause: filters.Clause | None,
    sort: int,
    page: PageRequest,
    tokens: PageTokens,
) -> Page[FlowRunRecord]:
    """Runs matching `clause` (compiled from the criteria by filters.flow_run_criteria)."""
    sort_key = choose_sort(_SORTS, sort)
    return fetch_rows(conn, _matching(clause), sort_key, page, tokens, _load)


def count_flow_runs(session: Session, criteria: f.FlowRunCriteria) -> int:
    clause = filters.flow_run_criteria(criteria)
    statement = select(func.count()).select_from(R)
    if clause is not None:
        statement = statement.where(clause)
    return int(session.scalar(statement) or 0)


# The parts of empirical_policy a client sets; the rest (pause keys, resuming) is the server's.
CLIENT_POLICY_KEYS = frozenset({"retries", "retry_delay"})

UPDATABLE = frozenset(
    {
        "name",
        "flow_version",
        "parameters",
        "context",
        "run_config",
        "tags",
        "labels",
        "empirical_policy",
        "work_pool_name",
        "work_queue_name",
        "infrastructure_pid",
    }
)


def update_flow_run(session: Session, flow_run_id: uuid.UUID, changes: dict[str, Any]) -> m.FlowRun:
    run = get_flow_run(session, flow_run_id)
    for name, value in changes.items():
        if name == "tags":
            set_tags(run, m.FlowRunTag, value)
        elif name == "empirical_policy":
            kept = {k: v for k, v in run.empirical_policy.items() if k not in CLIENT_POLICY_KEYS}
            run.empirical_policy = {**kept, **value}
        else:
            setattr(run, name, value)
    if "work_pool_name" in changes or "work_queue_name" in changes:
        ensure_work_queue(session, run.work_pool_name, run.work_queue_name)
    run.updated = now()
    session.flush()
    return run


def delete_flow_run(session: Session, flow_run_id: uuid.UUID) -> None:
    session.delete(get_flow_run(session, flow_run_id))
    outbox.record(session, RunDeleted(flow_run_id))


class FlowRunService(RunService):
    """Flow runs, each call in a transaction of its own (a read by id in one statement)."""

    async def create(self, values: FlowRunValues, initial: Proposal) -> tuple[FlowRunRecord, bool]:
        """The run, made in its initial state unless its idempotency key names one already;
        and whether it was made."""
        return await self._db.write(
            lambda s: create_flow_run(s, values, initial, self._orchestration)
        )

    async def get(self, flow_run_id: uuid.UUID) -> FlowRunRecord:
        return await self._db.read_one(lambda conn: read_flow_run(conn, flow_run_id), by_key=True)

    async def list_page(
        self, criteria: f.FlowRunCriteria, sort: int, page: PageRequest
    ) -> tuple[Page[FlowRunRecord], int]:
        """One page of matching runs, and the watch cursor read before it: every change after
        the cursor is either in the page or later."""
        clause = filters.flow_run_criteria(criteria)  # refused before any SQL runs

        # Two statements, each on its own snapshot: the cursor is read first, so the page
        # (read after it) holds every change up to it.
        def work(conn: Connection) -> tuple[Page[FlowRunRecord], int]:
            cursor = outbox.global_last_seq(conn)
            return list_flow_runs(conn, clause, sort, page, self._tokens), cursor

        return await self._db.read_one(work)

    async def count(self, criteria: f.FlowRunCriteria) -> int:
        return await self._db.read(lambda s: count_flow_runs(s, criteria))

    async def update(
        self,
        flow_run_id: uuid.UUID,
        changes: dict[str, Any],
        check: Callable[[FlowRunRecord], None],
    ) -> FlowRunRecord:
        """The run with `changes` made, unless `check` (run on the changed run, before the
        transaction commits) refuses it: then nothing changes."""

        def work(session: Session) -> FlowRunRecord:
            update_flow_run(session, flow_run_id, changes)
            session.flush()
            run = read_flow_run(session.connection(), flow_run_id)
            check(run)
            return run

        return await self._db.write(work)

    async def delete(self, flow_run_id: uuid.UUID) -> None:
        await self._db.write(lambda s: delete_flow_run(s, flow_run_id))

    async def set_state(
        self,
        flow_run_id: uuid.UUID,
        proposal: Proposal,
        *,
        force: bool,
        lease_seconds: float | None = None,
    ) -> Outcome:
        """What orchestration made of the proposal. A run it puts in RUNNING holds a lease of
        `lease_seconds`, or the server's default."""
        return await self._db.write(
            lambda s: set_flow_run_state(
                s,
                flow_run_id,
                proposal,
                force=force,
                settings=self._orchestration,
                lease_seconds=lease_seconds,
            )
        )

    async def resume(
        self, flow_run_id: uuid.UUID, run_input: dict[str, Any] | None = None
    ) -> Outcome:
        return await self._db.write(
            lambda s: resume_flow_run(s, flow_run_id, self._orchestration, run_input)
        )

    async def states(self, flow_run_id: uuid.UUID, page: PageRequest) -> Page[State]:
        """The run's states, oldest first."""
        return await self._db.read(lambda s: list_states(s, R, flow_run_id, page, self._tokens))
