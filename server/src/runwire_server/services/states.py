"""Running a policy on a run inside the transaction that writes its state."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from runwire_server.clock import now
from runwire_server.errors import NotFound
from runwire_server.events import outbox
from runwire_server.events.values import FlowRunStateChanged, TaskRunStateChanged
from runwire_server.ids import new_id
from runwire_server.orchestration.context import RunFacts, Settings, Status, Transition
from runwire_server.orchestration.engine import Policy, orchestrate
from runwire_server.orchestration.states import State, StateType
from runwire_server.orchestration.task_rules import MINIMAL_TASK_POLICY
from runwire_server.pages import Page, PageRequest, PageTokens
from runwire_server.run_records import (
    RunRecord,
    StateRecord,
    TaskRunRecord,
    details_to_json,
    state_from_row,
)
from runwire_server.services.store import SqlStore
from runwire_server.storage import models as m
from runwire_server.storage.database import Database
from runwire_server.storage.paging import SortKey, fetch_page
from runwire_server.storage.rows import insert_run_once, require_exists
from runwire_server.storage.run_rows import (
    TASK,
    RunT,
    RunTables,
    insert_state,
    new_record,
    read_run,
    update_run,
)

Proposal = Callable[[datetime], State]

# Fields that orchestration maintains on both kinds of run.
_COMMON = (
    "state_type",
    "state_name",
    "state_timestamp",
    "start_time",
    "end_time",
    "total_run_time",
    "expected_start_time",
    "next_scheduled_start_time",
    "run_count",
    "empirical_policy",
)
_FLOW_ONLY = ("deployment_id", "parent_task_run_id", "infrastructure_pid")
_TASK_ONLY = ("flow_run_id", "flow_run_run_count")


@dataclass(frozen=True)
class Outcome:
    """What a state change did, for the response."""

    status: Status
    state: State | None
    written: bool
    reason: str = ""
    delay_seconds: int | None = None

    @classmethod
    def of(cls, t: Transition) -> Outcome:
        return cls(t.status, t.validated, t.written, t.reason, t.delay_seconds)


def pending(at: datetime) -> State:
    """The initial state of a run created without one."""
    return State(type=StateType.PENDING, name="Pending", timestamp=at)


def current_state(run: RunRecord) -> State | None:
    return None if run.state is None else state_from_row(run.state)


def transition_time(initial: State | None, reported: datetime | None = None) -> datetime:
    """Now, or the time a reporter saw the change happen (`reported`) when that is earlier,
    but strictly after the current state, so a run's history order is never ambiguous."""
    at = now() if reported is None else min(reported, now())
    if initial is not None and at <= initial.timestamp:
        at = initial.timestamp + timedelta(microseconds=1)
    return at


def lock_run(session: Session, tables: RunTables[RunT], run_id: uuid.UUID) -> RunT:
    """The run, locked for a state change, as it is once the lock is held. Only task runs'
    tags matter to orchestration (tag concurrency limits), so a flow run's are not read."""
    return read_run(session.connection(), tables, run_id, lock=True, tags=not tables.is_flow)


def create_run(
    session: Session,
    tables: RunTables[RunT],
    row: dict[str, Any],
    tags: list[str],
    find: Callable[[], uuid.UUID | None] | None,
    initial: Proposal,
    policy: Policy,
    settings: Settings,
    *,
    reported: datetime | None = None,
    store: SqlStore | None = None,
    unwritten: dict[str, Any] | None = None,
) -> tuple[RunT, bool]:
    """Insert a run and give it its initial state, or return the run its unique key names
    (`find`, None for a run with no key but its id) and False. `row` holds the client's values
    (an id among them when the client chose it); the counters and times every new run starts
    with are set here. The initial state takes the time a reporter gives (`reported`, see
    transition_time). A new run's record comes from the values written, not a read back."""
    at = now()
    row = {"id": new_id(), "run_count": 0, "total_run_time": 0.0, **row, "created": at}
    row["updated"] = at
    run_id, created = insert_run_once(session, tables, row, tags, find)
    if not created:
        return read_run(session.connection(), tables, run_id), False
    run = new_record(tables, row, tags)
    orchestrate_run(
        session,
        tables,
        run,
        initial,
        policy,
        settings,
        reported=reported,
        store=store,
        unwritten=unwritten,
    )
    return run, True


def orchestrate_run(
    session: Session,
    tables: RunTables[RunT],
    run: RunT,
    proposal: Proposal,
    policy: Policy,
    settings: Settings,
    *,
    initial: State | None = None,
    lease_seconds: float | None = None,
    reported: datetime | None = None,
    store: SqlStore | None = None,
    unwritten: dict[str, Any] | None = None,
) -> Transition:
    """Run `policy` on the proposal for `run` (read under its lock) and write the result.

    A run whose written state is RUNNING takes a lease of `lease_seconds` (or the settings'
    default), keeps it while CANCELLING, and gives it up in any other state. The state is
    written at the time a reporter gives (`reported`, see transition_time), or now. The rules
    ask `store` (by default a SqlStore over the session) what they need to know. With
    `unwritten`, the run's changed columns are added to it for the caller to write once,
    after several transitions (of a run made in this transaction, which no other sees).
    `run` is updated in place to what was written, so the caller can answer with it.
    """
    is_flow = tables.is_flow
    conn = session.connection()
    fields = _COMMON + (_FLOW_ONLY if is_flow else _TASK_ONLY)
    facts = RunFacts(id=run.id, **{name: getattr(run, name) for name in fields})
    facts.lease_expires = run.lease_expires
    if not is_flow:
        facts.tags = run.tags
    # Orchestration may change the policy document in place: compare against a copy.
    policy_before = _copied(run.empirical_policy)
    initial = current_state(run) if initial is None else initial
    at = transition_time(initial, reported)

    def write(state: State) -> State:
        details: dict[str, Any] = {**state.details}
        if isinstance(run, TaskRunRecord):
            details["flow_run_id"] = str(run.flow_run_id)
            details["task_run_id"] = str(run.id)
        else:
            details["flow_run_id"] = str(run.id)
            if run.parent_task_run_id is not None:
                details["task_run_id"] = str(run.parent_task_run_id)
        row = {
            "id": new_id(),
            "type": state.type.value,
            "name": state.name,
            "timestamp": state.timestamp,
            "message": state.message or None,
            "state_details": details_to_json(details),
            "result": state.result,
        }
        insert_state(conn, tables, run.id, row)
        run.state = StateRecord(row)
        return state_from_row(run.state)

    transition = orchestrate(
        policy,
        facts,
        initial,
        proposal(at),
        now=at,
        store=store or SqlStore(session, mirror_subflow_state),
        write=write,
        settings=settings,
        passthrough=(SQLAlchemyError,),
    )
    changes = {}
    for name in _COMMON + ("flow_run_run_count",) * (not is_flow):
        value = getattr(facts, name)
        before = policy_before if name == "empirical_policy" else getattr(run, name)
        if value != before:
            changes[name] = value
            setattr(run, name, value)
    if transition.written and transition.validated is not None:
        # The run's update time and its lease run from the write, whatever time the state took.
        written_at = at if reported is None else now()
        changes["state_id"] = run.state_id = transition.validated.id
        changes["updated"] = run.updated = written_at
        changes.update(
            _lease_change(run, transition.validated, written_at, lease_seconds, settings)
        )
        _record_state_event(session, run, transition.validated)
    if unwritten is None:
        update_run(conn, tables, run.id, changes)
    else:
        unwritten.update(changes)
    return transition


def _copied(document: Any) -> Any:
    """A copy of a JSON document (dicts, lists and scalars): what deepcopy gives, at a fraction
    of its cost, on every state change."""
    if isinstance(document, dict):
        return {key: _copied(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_copied(value) for value in document]
    return document


LEASED = frozenset({StateType.RUNNING, StateType.CANCELLING})


def _lease_change(
    run: RunRecord, state: State, at: datetime, seconds: float | None, settings: Settings
) -> dict[str, Any]:
    """The lease columns `run` takes with its new `state` (set on `run` as well)."""
    if state.type is StateType.RUNNING:
        length = seconds or settings.lease_seconds or None
        expires = None if length is None else at + timedelta(seconds=length)
    elif state.type in LEASED:
        return {}  # CANCELLING: the reporter still has to finish the run
    else:
        length = expires = None
    if (run.lease_expires, run.lease_seconds) == (expires, length):
        return {}
    run.lease_expires, run.lease_seconds = expires, length
    return {"lease_expires": expires, "lease_seconds": length}


def _record_state_event(session: Session, run: RunRecord, state: State) -> None:
    if isinstance(run, TaskRunRecord):
        outbox.record(session, TaskRunStateChanged(run.flow_run_id, run.id, run.task_key, state))
    else:
        outbox.record(session, FlowRunStateChanged(run.id, state))


def list_states(
    session: Session,
    run_model: type[m.FlowRun] | type[m.TaskRun],
    run_id: uuid.UUID,
    page: PageRequest,
    tokens: PageTokens,
) -> Page[State]:
    """A run's states, oldest first, one page at a time."""
    kind = "flow run" if run_model is m.FlowRun else "task run"
    require_exists(session, run_model, run_id, kind)
    state_model: Any = m.FlowRunState if run_model is m.FlowRun else m.TaskRunState
    owner = state_model.flow_run_id if run_model is m.FlowRun else state_model.task_run_id
    sort = SortKey(state_model.id, False, state_model.timestamp, lambda r: r.timestamp)
    statement = select(state_model).where(owner == run_id)
    return fetch_page(session, statement, sort, page, tokens).map(state_from_row)


def mirror_subflow_state(
    session: Session, task_run_id: uuid.UUID, child_flow_run_id: uuid.UUID, state: State
) -> None:
    """Force a copy of a subflow's state onto the task run that stands for it in its parent."""
    try:
        run = lock_run(session, TASK, task_run_id)
    except NotFound:
        return
    details = {k: v for k, v in state.details.items() if k not in ("flow_run_id", "task_run_id")}
    details["child_flow_run_id"] = str(child_flow_run_id)
    copy = state.replace(id=None, details=details)
    orchestrate_run(
        session,
        TASK,
        run,
        lambda at: copy.replace(timestamp=at),
        MINIMAL_TASK_POLICY,
        _DEFAULTS,
    )


_DEFAULTS = Settings()


class RunService:
    """What a service of runs holds: the database, the page-token signer and the settings its
    policies read."""

    def __init__(self, db: Database, tokens: PageTokens, orchestration: Settings) -> None:
        self._db = db
        self._tokens = tokens
        self._orchestration = orchestration
