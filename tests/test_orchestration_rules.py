"""Every orchestration rule as a plain function: the case that fires and the case that does not.

No server and no database: rules see a RunFacts snapshot and an in-memory store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runwire_server.orchestration import flow_rules as fr
from runwire_server.orchestration import task_rules as tr
from runwire_server.orchestration.context import (
    CollisionStrategy,
    DeploymentFacts,
    FlowRunFacts,
    RunFacts,
    Status,
)
from runwire_server.orchestration.engine import Policy, Rule, Scope, UniversalRule, orchestrate
from runwire_server.orchestration.states import State, StateType

S = StateType
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DEPLOYMENT = uuid.UUID(int=1)
FLOW_RUN = uuid.UUID(int=2)


@dataclass
class MemoryStore:
    deployments: dict[uuid.UUID, DeploymentFacts] = field(default_factory=dict)
    slots: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)
    flow_runs: dict[uuid.UUID, FlowRunFacts] = field(default_factory=dict)
    cache: dict[str, State] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    tag_slots: dict[str, set[uuid.UUID]] = field(default_factory=dict)
    mirrored: list[tuple[uuid.UUID, State]] = field(default_factory=list)

    def deployment(self, deployment_id: uuid.UUID) -> DeploymentFacts | None:
        return self.deployments.get(deployment_id)

    def acquire_deployment_slot(self, deployment: DeploymentFacts, run_id: uuid.UUID) -> bool:
        held = self.slots.setdefault(deployment.id, set())
        if len(held) >= (deployment.concurrency_limit or 0):
            return False
        held.add(run_id)
        return True

    def holds_deployment_slot(self, deployment_id: uuid.UUID, run_id: uuid.UUID) -> bool:
        return run_id in self.slots.get(deployment_id, set())

    def release_deployment_slot(self, deployment_id: uuid.UUID, run_id: uuid.UUID) -> None:
        self.slots.get(deployment_id, set()).discard(run_id)

    def flow_run(self, flow_run_id: uuid.UUID) -> FlowRunFacts | None:
        return self.flow_runs.get(flow_run_id)

    def cached_state(self, cache_key: str, now: datetime) -> State | None:
        return self.cache.get(cache_key)

    def insert_cache(self, cache_key: str, expiration: datetime | None, state: State) -> None:
        self.cache[cache_key] = state

    def tag_limits(self, tags: list[str]) -> dict[str, int]:
        return {t: self.limits[t] for t in tags if t in self.limits}

    def acquire_tag_slots(self, limits: dict[str, int], run_id: uuid.UUID) -> list[str]:
        full = [t for t, n in limits.items() if len(self.tag_slots.get(t, set())) >= n]
        if not full:
            for tag in limits:
                self.tag_slots.setdefault(tag, set()).add(run_id)
        return full

    def release_tag_slots(self, run_id: uuid.UUID) -> None:
        for held in self.tag_slots.values():
            held.discard(run_id)

    def mirror_to_parent_task(self, task_run_id: uuid.UUID, child: uuid.UUID, state: State) -> None:
        self.mirrored.append((task_run_id, state))


def st(type_: StateType, name: str | None = None, result: bool = False, **details: Any) -> State:
    return State(
        type=type_,
        name=name or type_.default_name,
        timestamp=NOW - timedelta(minutes=1),
        details=details,
        result={"serializer": "json", "inline_value": "NDI="} if result else None,
    )


def decide(
    rules: Rule | list[Rule],
    initial: State | None,
    proposed: State,
    *,
    store: MemoryStore | None = None,
    **run_fields: Any,
):
    run = RunFacts(id=uuid.UUID(int=99), **run_fields)
    store = store or MemoryStore()
    policy = Policy("test", rules if isinstance(rules, list) else [rules], ())
    transition = orchestrate(
        policy,
        run,
        initial,
        proposed.replace(timestamp=NOW),
        now=NOW,
        store=store,
        write=lambda state: state.replace(id=uuid.uuid4()),
    )
    return transition


@dataclass
class Case:
    id: str
    rule: Rule
    initial: State | None
    proposed: State
    status: Status
    written: str | None  # name of the state written, or None when nothing was written
    reason: str = ""
    run: dict[str, Any] = field(default_factory=dict)
    store: MemoryStore | None = None


def deployments(
    limit: int | None, taken: int = 0, strategy=CollisionStrategy.ENQUEUE
) -> MemoryStore:
    store = MemoryStore(deployments={DEPLOYMENT: DeploymentFacts(DEPLOYMENT, limit, strategy)})
    store.slots[DEPLOYMENT] = {uuid.uuid4() for _ in range(taken)}
    return store


def flow_in(state: State | None, run_count: int = 1) -> MemoryStore:
    return MemoryStore(flow_runs={FLOW_RUN: FlowRunFacts(FLOW_RUN, state, run_count)})


LATER = NOW + timedelta(seconds=90)
CASES = [
    # PreventDuplicateTransitions
    Case(
        "duplicate",
        fr.PreventDuplicateTransitions(),
        st(S.RUNNING, transition_id="t1"),
        st(S.COMPLETED, transition_id="t1"),
        Status.REJECT,
        None,
        "This run has already made this state transition.",
    ),
    Case(
        "not-duplicate",
        fr.PreventDuplicateTransitions(),
        st(S.RUNNING, transition_id="t1"),
        st(S.COMPLETED, transition_id="t2"),
        Status.ACCEPT,
        "Completed",
    ),
    # HandleFlowTerminalStateTransitions
    Case(
        "terminal-to-crashed",
        fr.HandleFlowTerminalStateTransitions(),
        st(S.COMPLETED),
        st(S.CRASHED),
        Status.ABORT,
        None,
        "Run is already in terminal state COMPLETED.",
    ),
    Case(
        "completed-result-rerun",
        fr.HandleFlowTerminalStateTransitions(),
        st(S.COMPLETED, result=True),
        st(S.RUNNING),
        Status.REJECT,
        None,
        "Run is already COMPLETED.",
    ),
    Case(
        "completed-result-overwrite",
        fr.HandleFlowTerminalStateTransitions(),
        st(S.COMPLETED, result=True),
        st(S.COMPLETED),
        Status.REJECT,
        None,
        "Cannot overwrite a COMPLETED state that carries persisted result data "
        "with one that does not.",
    ),
    Case(
        "reschedule-no-deployment",
        fr.HandleFlowTerminalStateTransitions(),
        st(S.FAILED),
        st(S.SCHEDULED),
        Status.ABORT,
        None,
        "Cannot reschedule a run without an associated deployment.",
    ),
    Case(
        "manual-retry",
        fr.HandleFlowTerminalStateTransitions(),
        st(S.FAILED),
        st(S.RUNNING),
        Status.ACCEPT,
        "Running",
    ),
    Case(
        "terminal-rule-not-from-running",
        fr.HandleFlowTerminalStateTransitions(),
        st(S.RUNNING),
        st(S.CRASHED),
        Status.ACCEPT,
        "Crashed",
    ),
    # EnforceCancellingToCancelledTransition
    Case(
        "cancelling-to-running",
        fr.EnforceCancellingToCancelledTransition(),
        st(S.CANCELLING),
        st(S.RUNNING),
        Status.REJECT,
        None,
        "Cannot transition flows that are cancelling to a state other than Cancelled.",
    ),
    Case(
        "cancelling-to-cancelled",
        fr.EnforceCancellingToCancelledTransition(),
        st(S.CANCELLING),
        st(S.CANCELLED),
        Status.ACCEPT,
        "Cancelled",
    ),
    # BypassCancellingFlowRunsWithNoInfra
    Case(
        "cancel-scheduled",
        fr.BypassCancellingFlowRunsWithNoInfra(),
        st(S.SCHEDULED),
        st(S.CANCELLING),
        Status.REJECT,
        "Cancelled",
        "Scheduled flow run has no infrastructure to terminate.",
    ),
    Case(
        "cancel-scheduled-with-infra",
        fr.BypassCancellingFlowRunsWithNoInfra(),
        st(S.SCHEDULED),
        st(S.CANCELLING),
        Status.ACCEPT,
        "Cancelling",
        run={"infrastructure_pid": "pid-1"},
    ),
    Case(
        "cancel-suspended",
        fr.BypassCancellingFlowRunsWithNoInfra(),
        st(S.PAUSED, "Suspended", pause_reschedule=True),
        st(S.CANCELLING),
        Status.REJECT,
        "Cancelled",
        "Suspended flow run has no infrastructure to terminate.",
    ),
    Case(
        "cancel-paused",
        fr.BypassCancellingFlowRunsWithNoInfra(),
        st(S.PAUSED),
        st(S.CANCELLING),
        Status.ACCEPT,
        "Cancelling",
    ),
    # CancelRunsWhoseLeaseEnded
    Case(
        "cancel-lease-ended",
        fr.CancelRunsWhoseLeaseEnded(),
        st(S.RUNNING),
        st(S.CANCELLING),
        Status.REJECT,
        "Cancelled",
        "No process reports this run any more (its lease ended): cancelled at once.",
        run={"lease_expires": NOW - timedelta(seconds=1)},
    ),
    Case(
        "cancel-lease-live",
        fr.CancelRunsWhoseLeaseEnded(),
        st(S.RUNNING),
        st(S.CANCELLING),
        Status.ACCEPT,
        "Cancelling",
        run={"lease_expires": NOW + timedelta(seconds=30)},
    ),
    Case(
        "cancel-no-lease",
        fr.CancelRunsWhoseLeaseEnded(),
        st(S.RUNNING),
        st(S.CANCELLING),
        Status.ACCEPT,
        "Cancelling",
    ),
    # PreventPendingTransitions
    Case(
        "second-claim",
        fr.PreventPendingTransitions(),
        st(S.PENDING),
        st(S.PENDING),
        Status.ABORT,
        None,
        "This run is in a PENDING state and cannot transition to a PENDING state.",
    ),
    Case(
        "pending-subname",
        fr.PreventPendingTransitions(),
        st(S.PENDING),
        st(S.PENDING, "Submitting"),
        Status.ACCEPT,
        "Submitting",
    ),
    Case(
        "running-to-pending",
        fr.PreventPendingTransitions(),
        st(S.RUNNING),
        st(S.PENDING),
        Status.ABORT,
        None,
        "This run is in a RUNNING state and cannot transition to a PENDING state.",
    ),
    Case(
        "first-claim",
        fr.PreventPendingTransitions(),
        st(S.SCHEDULED),
        st(S.PENDING),
        Status.ACCEPT,
        "Pending",
    ),
    # SecureFlowConcurrencySlots
    Case(
        "slot-free",
        fr.SecureFlowConcurrencySlots(),
        st(S.SCHEDULED),
        st(S.PENDING),
        Status.ACCEPT,
        "Pending",
        run={"deployment_id": DEPLOYMENT},
        store=deployments(1),
    ),
    Case(
        "slots-full-enqueue",
        fr.SecureFlowConcurrencySlots(),
        st(S.SCHEDULED),
        st(S.PENDING),
        Status.REJECT,
        "AwaitingConcurrencySlot",
        "Deployment concurrency limit reached.",
        run={"deployment_id": DEPLOYMENT},
        store=deployments(1, taken=1),
    ),
    Case(
        "slots-full-cancel-new",
        fr.SecureFlowConcurrencySlots(),
        st(S.SCHEDULED),
        st(S.PENDING),
        Status.REJECT,
        "Cancelled",
        "Deployment concurrency limit reached.",
        run={"deployment_id": DEPLOYMENT},
        store=deployments(1, taken=1, strategy=CollisionStrategy.CANCEL_NEW),
    ),
    Case(
        "slots-zero",
        fr.SecureFlowConcurrencySlots(),
        st(S.SCHEDULED),
        st(S.PENDING),
        Status.ABORT,
        None,
        "The deployment concurrency limit is 0. The flow will deadlock if submitted.",
        run={"deployment_id": DEPLOYMENT},
        store=deployments(0),
    ),
    Case(
        "slots-deployment-gone",
        fr.SecureFlowConcurrencySlots(),
        st(S.SCHEDULED),
        st(S.PENDING),
        Status.ABORT,
        None,
        "Deployment not found.",
        run={"deployment_id": DEPLOYMENT},
    ),
    Case(
        "slots-no-limit",
        fr.SecureFlowConcurrencySlots(),
        st(S.SCHEDULED),
        st(S.PENDING),
        Status.ACCEPT,
        "Pending",
        run={"deployment_id": DEPLOYMENT},
        store=deployments(None),
    ),
    # ValidateDeploymentConcurrencyAtRunning
    Case(
        "slot-lost",
        fr.ValidateDeploymentConcurrencyAtRunning(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.REJECT,
        "Cancelled",
        "Deployment concurrency slot lost during provisioning - no slots available.",
        run={"deployment_id": DEPLOYMENT},
        store=deployments(1, taken=1),
    ),
    Case(
        "slot-regained",
        fr.ValidateDeploymentConcurrencyAtRunning(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.ACCEPT,
        "Running",
        run={"deployment_id": DEPLOYMENT},
        store=deployments(1),
    ),
    # EnsureOnlyScheduledFlowsMarkedLate
    Case(
        "late-from-pending",
        fr.EnsureOnlyScheduledFlowsMarkedLate(),
        st(S.PENDING),
        st(S.SCHEDULED, "Late"),
        Status.REJECT,
        None,
        "Only scheduled flows can be marked late.",
    ),
    Case(
        "late-twice",
        fr.EnsureOnlyScheduledFlowsMarkedLate(),
        st(S.SCHEDULED, "Late"),
        st(S.SCHEDULED, "Late"),
        Status.REJECT,
        None,
        "This flow run is already marked late.",
    ),
    Case(
        "late",
        fr.EnsureOnlyScheduledFlowsMarkedLate(),
        st(S.SCHEDULED),
        st(S.SCHEDULED, "Late"),
        Status.ACCEPT,
        "Late",
    ),
    # HandlePausingFlows
    Case(
        "pause-no-state",
        fr.HandlePausingFlows(),
        None,
        st(S.PAUSED),
        Status.ABORT,
        None,
        "Cannot pause flows with no state.",
    ),
    Case(
        "pause-not-running",
        fr.HandlePausingFlows(),
        st(S.PENDING),
        st(S.PAUSED),
        Status.REJECT,
        None,
        "Cannot pause flows that are not currently running.",
    ),
    Case(
        "pause-fired",
        fr.HandlePausingFlows(),
        st(S.RUNNING),
        st(S.PAUSED, pause_key="k"),
        Status.REJECT,
        None,
        "This pause has already fired.",
        run={"empirical_policy": {"pause_keys": ["k"]}},
    ),
    Case(
        "suspend-subflow",
        fr.HandlePausingFlows(),
        st(S.RUNNING),
        st(S.PAUSED, "Suspended", pause_reschedule=True),
        Status.ABORT,
        None,
        "Cannot suspend subflows.",
        run={"parent_task_run_id": uuid.uuid4(), "deployment_id": DEPLOYMENT},
    ),
    Case(
        "suspend-no-deployment",
        fr.HandlePausingFlows(),
        st(S.RUNNING),
        st(S.PAUSED, "Suspended", pause_reschedule=True),
        Status.ABORT,
        None,
        "Cannot suspend flows without a deployment.",
    ),
    Case(
        "pause",
        fr.HandlePausingFlows(),
        st(S.RUNNING),
        st(S.PAUSED, pause_key="k"),
        Status.ACCEPT,
        "Paused",
    ),
    # HandleResumingPausedFlows
    Case(
        "paused-to-pending",
        fr.HandleResumingPausedFlows(),
        st(S.PAUSED),
        st(S.PENDING),
        Status.REJECT,
        None,
        "This run cannot transition to the PENDING state from the PAUSED state.",
    ),
    Case(
        "resume-suspended-no-deployment",
        fr.HandleResumingPausedFlows(),
        st(S.PAUSED, "Suspended", pause_reschedule=True),
        st(S.SCHEDULED, "Resuming"),
        Status.REJECT,
        None,
        "Cannot reschedule a suspended flow run without a deployment.",
    ),
    Case(
        "resume-timed-out",
        fr.HandleResumingPausedFlows(),
        st(S.PAUSED, pause_timeout=NOW - timedelta(seconds=1)),
        st(S.RUNNING),
        Status.REJECT,
        "Failed",
        "The flow run pause has timed out and can no longer resume.",
    ),
    Case(
        "resume",
        fr.HandleResumingPausedFlows(),
        st(S.PAUSED, pause_timeout=LATER),
        st(S.RUNNING),
        Status.ACCEPT,
        "Running",
    ),
    # WaitForScheduledTime
    Case(
        "wait-for-schedule",
        fr.WaitForScheduledTime(),
        st(S.SCHEDULED, scheduled_time=LATER),
        st(S.RUNNING),
        Status.WAIT,
        None,
        "Scheduled time is in the future",
    ),
    Case(
        "schedule-reached",
        fr.WaitForScheduledTime(),
        st(S.SCHEDULED, scheduled_time=NOW),
        st(S.RUNNING),
        Status.ACCEPT,
        "Running",
    ),
    # RetryFailedFlows
    Case(
        "flow-retry",
        fr.RetryFailedFlows(),
        st(S.RUNNING),
        st(S.FAILED),
        Status.REJECT,
        "AwaitingRetry",
        "Retrying",
        run={"run_count": 1, "empirical_policy": {"retries": 2}},
    ),
    Case(
        "flow-retries-spent",
        fr.RetryFailedFlows(),
        st(S.RUNNING),
        st(S.FAILED),
        Status.ACCEPT,
        "Failed",
        run={"run_count": 3, "empirical_policy": {"retries": 2}},
    ),
    Case(
        "flow-no-retries",
        fr.RetryFailedFlows(),
        st(S.RUNNING),
        st(S.FAILED),
        Status.ACCEPT,
        "Failed",
        run={"run_count": 1},
    ),
    # CacheRetrieval
    Case(
        "cache-hit",
        tr.CacheRetrieval(),
        st(S.PENDING),
        st(S.RUNNING, cache_key="k"),
        Status.REJECT,
        "Cached",
        "Retrieved state from cache",
        store=MemoryStore(cache={"k": st(S.COMPLETED, result=True)}),
    ),
    Case(
        "cache-refresh",
        tr.CacheRetrieval(),
        st(S.PENDING),
        st(S.RUNNING, cache_key="k", refresh_cache=True),
        Status.ACCEPT,
        "Running",
        store=MemoryStore(cache={"k": st(S.COMPLETED, result=True)}),
    ),
    Case(
        "cache-miss",
        tr.CacheRetrieval(),
        st(S.PENDING),
        st(S.RUNNING, cache_key="k"),
        Status.ACCEPT,
        "Running",
    ),
    # HandleTaskTerminalStateTransitions
    Case(
        "task-terminal-to-paused",
        tr.HandleTaskTerminalStateTransitions(),
        st(S.COMPLETED),
        st(S.PAUSED),
        Status.ABORT,
        None,
        "Run is already COMPLETED.",
    ),
    Case(
        "task-completed-rerun",
        tr.HandleTaskTerminalStateTransitions(),
        st(S.COMPLETED, result=True),
        st(S.RUNNING),
        Status.REJECT,
        None,
        "This run is already completed.",
    ),
    Case(
        "task-retry-of-flow",
        tr.HandleTaskTerminalStateTransitions(),
        st(S.FAILED),
        st(S.RUNNING),
        Status.ACCEPT,
        "Retrying",
        run={"flow_run_id": FLOW_RUN, "flow_run_run_count": 1, "run_count": 1},
        store=flow_in(st(S.RUNNING), run_count=2),
    ),
    # PreventRunningTasksFromStoppedFlows
    Case(
        "flow-paused",
        tr.PreventRunningTasksFromStoppedFlows(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.REJECT,
        "NotReady",
        f"The flow is paused, new tasks can execute after resuming flow run: {FLOW_RUN}.",
        run={"flow_run_id": FLOW_RUN},
        store=flow_in(st(S.PAUSED)),
    ),
    Case(
        "flow-not-running",
        tr.PreventRunningTasksFromStoppedFlows(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.ABORT,
        None,
        "The enclosing flow must be running to begin task execution.",
        run={"flow_run_id": FLOW_RUN},
        store=flow_in(st(S.SCHEDULED)),
    ),
    Case(
        "flow-running",
        tr.PreventRunningTasksFromStoppedFlows(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.ACCEPT,
        "Running",
        run={"flow_run_id": FLOW_RUN},
        store=flow_in(st(S.RUNNING)),
    ),
    # SecureTaskConcurrencySlots
    Case(
        "tag-limit-zero",
        tr.SecureTaskConcurrencySlots(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.ABORT,
        None,
        'The concurrency limit on tag "db" is 0 and will deadlock if the task tries to run again.',
        run={"tags": ["db"]},
        store=MemoryStore(limits={"db": 0}),
    ),
    Case(
        "tag-limit-full",
        tr.SecureTaskConcurrencySlots(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.WAIT,
        None,
        "Concurrency limit reached for tags: db",
        run={"tags": ["db"]},
        store=MemoryStore(limits={"db": 1}, tag_slots={"db": {uuid.uuid4()}}),
    ),
    Case(
        "tag-limit-free",
        tr.SecureTaskConcurrencySlots(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.ACCEPT,
        "Running",
        run={"tags": ["db"]},
        store=MemoryStore(limits={"db": 1}),
    ),
    # RetryFailedTasks
    Case(
        "task-retry",
        tr.RetryFailedTasks(),
        st(S.RUNNING),
        st(S.FAILED),
        Status.REJECT,
        "AwaitingRetry",
        "Retrying",
        run={"run_count": 1, "empirical_policy": {"retries": 2}},
    ),
    Case(
        "task-not-retriable",
        tr.RetryFailedTasks(),
        st(S.RUNNING),
        st(S.FAILED, retriable=False),
        Status.ACCEPT,
        "Failed",
        run={"run_count": 1, "empirical_policy": {"retries": 2}},
    ),
    # RenameReruns
    Case(
        "rename-retrying",
        tr.RenameReruns(),
        st(S.SCHEDULED, "AwaitingRetry"),
        st(S.RUNNING),
        Status.ACCEPT,
        "Retrying",
        run={"run_count": 1},
    ),
    Case(
        "rename-rerunning",
        tr.RenameReruns(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.ACCEPT,
        "Rerunning",
        run={"run_count": 1},
    ),
    Case(
        "first-run-not-renamed",
        tr.RenameReruns(),
        st(S.PENDING),
        st(S.RUNNING),
        Status.ACCEPT,
        "Running",
    ),
    # CacheInsertion
    Case(
        "cache-key-too-long",
        tr.CacheInsertion(),
        st(S.RUNNING),
        st(S.COMPLETED, cache_key="k" * 2001),
        Status.REJECT,
        "Completed",
        "Cache key exceeded maximum allowed length of 2000 characters.",
    ),
    Case(
        "cache-key-ok",
        tr.CacheInsertion(),
        st(S.RUNNING),
        st(S.COMPLETED, cache_key="k"),
        Status.ACCEPT,
        "Completed",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case) -> None:
    t = decide(case.rule, case.initial, case.proposed, store=case.store, **case.run)
    assert t.status is case.status
    assert t.reason == case.reason
    if case.written is None:
        assert not t.written and t.validated is case.initial
    else:
        assert t.written and t.validated is not None and t.validated.name == case.written


def test_every_rule_has_a_case() -> None:
    rules = {
        type(r)
        for p in (fr.CORE_FLOW_POLICY, fr.MINIMAL_FLOW_POLICY, tr.CORE_TASK_POLICY)
        for r in p.rules
    }
    covered = {type(c.rule) for c in CASES} | {
        fr.CopyScheduledTime,
        fr.PreventResultDataLoss,
        fr.ReleaseFlowConcurrencySlots,
        tr.UpdateFlowRunTrackerOnTasks,
        tr.ReleaseTaskConcurrencySlots,
    }
    assert rules <= covered, rules - covered


def test_copy_scheduled_time() -> None:
    t = decide(fr.CopyScheduledTime(), st(S.SCHEDULED, scheduled_time=LATER), st(S.PENDING))
    assert t.validated is not None and t.validated.details["scheduled_time"] == LATER
    untouched = decide(
        fr.CopyScheduledTime(),
        st(S.SCHEDULED, scheduled_time=LATER),
        st(S.PENDING, scheduled_time=NOW),
    )
    assert untouched.validated is not None and untouched.validated.details["scheduled_time"] == NOW


def test_prevent_result_data_loss_holds_under_force() -> None:
    t = decide(fr.MINIMAL_FLOW_POLICY.rules[0], st(S.COMPLETED, result=True), st(S.COMPLETED))
    assert t.status is Status.REJECT and not t.written
    ok = decide(
        fr.MINIMAL_FLOW_POLICY.rules[0], st(S.COMPLETED, result=True), st(S.COMPLETED, result=True)
    )
    assert ok.status is Status.ACCEPT


def test_wait_delay_and_retry_schedule() -> None:
    waiting = decide(
        fr.WaitForScheduledTime(), st(S.SCHEDULED, scheduled_time=LATER), st(S.RUNNING)
    )
    assert waiting.delay_seconds == 90
    retry = decide(
        fr.RetryFailedFlows(),
        st(S.RUNNING),
        st(S.FAILED),
        run_count=1,
        empirical_policy={"retries": 2, "retry_delay": 30},
    )
    assert retry.validated is not None
    assert retry.validated.details["scheduled_time"] == NOW + timedelta(seconds=30)
    assert retry.run.empirical_policy["retry_type"] == "in_process"
    task_retry = decide(
        tr.RetryFailedTasks(),
        st(S.RUNNING),
        st(S.FAILED),
        run_count=2,
        empirical_policy={"retries": 3, "retry_delays": [1, 5]},
    )
    assert task_retry.validated is not None
    assert task_retry.validated.details["scheduled_time"] == NOW + timedelta(seconds=5)


def test_slots_are_taken_and_released() -> None:
    store = deployments(1)
    claim = decide(
        fr.SecureFlowConcurrencySlots(),
        st(S.SCHEDULED),
        st(S.PENDING),
        store=store,
        deployment_id=DEPLOYMENT,
    )
    assert store.slots[DEPLOYMENT] == {claim.run.id}
    decide(
        fr.ReleaseFlowConcurrencySlots(),
        st(S.RUNNING),
        st(S.COMPLETED),
        store=store,
        deployment_id=DEPLOYMENT,
    )
    assert store.slots[DEPLOYMENT] == set()


class RejectEverything(Rule):
    def before(self, scope: Scope) -> None:
        scope.reject(None, "no")


def test_a_rule_whose_transition_is_changed_inside_it_cleans_up() -> None:
    store = deployments(1)
    t = decide(
        [fr.SecureFlowConcurrencySlots(), RejectEverything()],
        st(S.SCHEDULED),
        st(S.PENDING),
        store=store,
        deployment_id=DEPLOYMENT,
    )
    assert t.status is Status.REJECT
    assert store.slots[DEPLOYMENT] == set()  # the slot taken on entry was given back


def test_pause_keys_are_recorded_and_resume_sets_resuming() -> None:
    paused = decide(fr.HandlePausingFlows(), st(S.RUNNING), st(S.PAUSED, pause_key="k"))
    assert paused.run.empirical_policy["pause_keys"] == ["k"]
    resumed = decide(fr.HandleResumingPausedFlows(), st(S.PAUSED), st(S.RUNNING))
    assert "resuming" not in resumed.run.empirical_policy  # resumed straight to RUNNING
    suspended = st(S.PAUSED, "Suspended", pause_reschedule=True)
    rescheduled = decide(
        fr.HandleResumingPausedFlows(),
        suspended,
        st(S.SCHEDULED, "Resuming"),
        deployment_id=DEPLOYMENT,
    )
    assert rescheduled.run.empirical_policy["resuming"] is True


def test_task_bookkeeping_rules() -> None:
    store = flow_in(st(S.RUNNING), run_count=3)
    t = decide(
        tr.UpdateFlowRunTrackerOnTasks(),
        st(S.PENDING),
        st(S.RUNNING),
        store=store,
        flow_run_id=FLOW_RUN,
    )
    assert t.run.flow_run_run_count == 3
    store = MemoryStore(limits={"db": 1})
    running = decide(
        tr.SecureTaskConcurrencySlots(), st(S.PENDING), st(S.RUNNING), store=store, tags=["db"]
    )
    assert store.tag_slots["db"] == {running.run.id}
    decide(tr.ReleaseTaskConcurrencySlots(), st(S.RUNNING), st(S.COMPLETED), store=store)
    assert store.tag_slots["db"] == set()
    inserted = MemoryStore()
    decide(tr.CacheInsertion(), st(S.RUNNING), st(S.COMPLETED, cache_key="k"), store=inserted)
    assert "k" in inserted.cache


def test_a_failing_rule_aborts() -> None:
    class Broken(Rule):
        def before(self, scope: Scope) -> None:
            raise KeyError("x")

    t = decide(Broken(), st(S.RUNNING), st(S.COMPLETED))
    assert t.status is Status.ABORT and not t.written
    assert t.reason.startswith("Aborting orchestration due to error in Broken:")


# --- Concurrency slots follow the written state, through whole policies ---------------------

RUN = uuid.UUID(int=99)  # the run `decide` orchestrates
PAST = NOW - timedelta(minutes=5)


@dataclass
class SlotCase:
    id: str
    policy: Policy
    initial: State | None
    proposed: State
    held_before: bool
    held_after: bool
    written: str | None  # name of the state written, or None when nothing was written
    run: dict[str, Any] = field(default_factory=dict)
    others: int = 0  # slots held by other runs
    full: bool = False  # the limit is `others` (else one more)


RETRY_ONCE = {"retries": 1, "retry_delay": 600}
FLOW_SLOT_CASES = [
    SlotCase("claim", fr.CORE_FLOW_POLICY, st(S.SCHEDULED), st(S.PENDING), False, True, "Pending"),
    SlotCase(
        "claim-full",
        fr.CORE_FLOW_POLICY,
        st(S.SCHEDULED),
        st(S.PENDING),
        False,
        False,
        "AwaitingConcurrencySlot",
        others=1,
        full=True,
    ),
    SlotCase("start", fr.CORE_FLOW_POLICY, st(S.PENDING), st(S.RUNNING), True, True, "Running"),
    SlotCase(
        "start-slot-lost",
        fr.CORE_FLOW_POLICY,
        st(S.PENDING),
        st(S.RUNNING),
        False,
        False,
        "Cancelled",
        others=1,
        full=True,
    ),
    SlotCase(
        "fail-rewritten-to-awaiting-retry",
        fr.CORE_FLOW_POLICY,
        st(S.RUNNING),
        st(S.FAILED),
        True,
        False,
        "AwaitingRetry",
        run={"run_count": 1, "empirical_policy": RETRY_ONCE},
    ),
    SlotCase(
        "fail-for-good",
        fr.CORE_FLOW_POLICY,
        st(S.RUNNING),
        st(S.FAILED),
        True,
        False,
        "Failed",
        run={"run_count": 2, "empirical_policy": RETRY_ONCE},
    ),
    SlotCase(
        "complete", fr.CORE_FLOW_POLICY, st(S.RUNNING), st(S.COMPLETED), True, False, "Completed"
    ),
    SlotCase("crash", fr.CORE_FLOW_POLICY, st(S.RUNNING), st(S.CRASHED), True, False, "Crashed"),
    SlotCase("pause", fr.CORE_FLOW_POLICY, st(S.RUNNING), st(S.PAUSED), True, False, "Paused"),
    SlotCase(
        "cancelling-holds",
        fr.CORE_FLOW_POLICY,
        st(S.RUNNING),
        st(S.CANCELLING),
        True,
        True,
        "Cancelling",
    ),
    SlotCase(
        "cancelled",
        fr.CORE_FLOW_POLICY,
        st(S.CANCELLING),
        st(S.CANCELLED),
        True,
        False,
        "Cancelled",
    ),
    SlotCase(
        "cancel-while-awaiting-retry",
        fr.CORE_FLOW_POLICY,
        st(S.SCHEDULED, "AwaitingRetry", scheduled_time=LATER),
        st(S.CANCELLING),
        False,
        False,
        "Cancelled",
    ),
    SlotCase(
        "refused-keeps", fr.CORE_FLOW_POLICY, st(S.CANCELLING), st(S.RUNNING), True, True, None
    ),
    SlotCase(
        "duplicate-keeps",
        fr.CORE_FLOW_POLICY,
        st(S.RUNNING, transition_id="t"),
        st(S.COMPLETED, transition_id="t"),
        True,
        True,
        None,
    ),
    SlotCase(
        "forced-reschedule",
        fr.MINIMAL_FLOW_POLICY,
        st(S.RUNNING),
        st(S.SCHEDULED),
        True,
        False,
        "Scheduled",
    ),
]

TASK_SLOT_CASES = [
    SlotCase("start", tr.CORE_TASK_POLICY, st(S.PENDING), st(S.RUNNING), False, True, "Running"),
    SlotCase(
        "start-full",
        tr.CORE_TASK_POLICY,
        st(S.PENDING),
        st(S.RUNNING),
        False,
        False,
        None,
        others=1,
        full=True,
    ),
    SlotCase(
        "start-waits-for-its-time",
        tr.CORE_TASK_POLICY,
        st(S.SCHEDULED, scheduled_time=LATER),
        st(S.RUNNING),
        False,
        False,
        None,
    ),
    SlotCase(
        "fail-rewritten-to-awaiting-retry",
        tr.CORE_TASK_POLICY,
        st(S.RUNNING),
        st(S.FAILED),
        True,
        False,
        "AwaitingRetry",
        run={"run_count": 1, "empirical_policy": {"retries": 1, "retry_delays": [600]}},
    ),
    SlotCase(
        "retry-starts",
        tr.CORE_TASK_POLICY,
        st(S.SCHEDULED, "AwaitingRetry", scheduled_time=PAST),
        st(S.RUNNING),
        False,
        True,
        "Retrying",
        run={"run_count": 1, "empirical_policy": {"retries": 1, "retry_delays": [600]}},
    ),
    SlotCase(
        "complete", tr.CORE_TASK_POLICY, st(S.RUNNING), st(S.COMPLETED), True, False, "Completed"
    ),
    SlotCase(
        "cancelling-holds",
        tr.CORE_TASK_POLICY,
        st(S.RUNNING),
        st(S.CANCELLING),
        True,
        True,
        "Cancelling",
    ),
    SlotCase(
        "forced-fail", tr.MINIMAL_TASK_POLICY, st(S.RUNNING), st(S.FAILED), True, False, "Failed"
    ),
]


def _slot_store(case: SlotCase, *, task: bool) -> MemoryStore:
    others = {uuid.uuid4() for _ in range(case.others)}
    mine = {RUN} if case.held_before else set()
    limit = case.others if case.full else case.others + 1
    if task:
        return MemoryStore(limits={"db": limit}, tag_slots={"db": others | mine})
    store = deployments(limit)
    store.slots[DEPLOYMENT] = others | mine
    return store


def _outcome(t: Any, case: SlotCase) -> None:
    if case.written is None:
        assert not t.written
    else:
        assert t.written and t.validated is not None and t.validated.name == case.written


@pytest.mark.parametrize("case", FLOW_SLOT_CASES, ids=[c.id for c in FLOW_SLOT_CASES])
def test_deployment_slots_follow_the_written_state(case: SlotCase) -> None:
    store = _slot_store(case, task=False)
    others = set(store.slots[DEPLOYMENT]) - {RUN}
    t = orchestrate(
        case.policy,
        RunFacts(id=RUN, deployment_id=DEPLOYMENT, **case.run),
        case.initial,
        case.proposed.replace(timestamp=NOW),
        now=NOW,
        store=store,
        write=lambda state: state.replace(id=uuid.uuid4()),
    )
    _outcome(t, case)
    assert (RUN in store.slots[DEPLOYMENT]) is case.held_after
    assert store.slots[DEPLOYMENT] - {RUN} == others  # no other run's slot is touched


@pytest.mark.parametrize("case", TASK_SLOT_CASES, ids=[c.id for c in TASK_SLOT_CASES])
def test_tag_slots_follow_the_written_state(case: SlotCase) -> None:
    store = _slot_store(case, task=True)
    others = set(store.tag_slots["db"]) - {RUN}
    t = orchestrate(
        case.policy,
        RunFacts(id=RUN, tags=["db"], **case.run),
        case.initial,
        case.proposed.replace(timestamp=NOW),
        now=NOW,
        store=store,
        write=lambda state: state.replace(id=uuid.uuid4()),
    )
    _outcome(t, case)
    assert (RUN in store.tag_slots["db"]) is case.held_after
    assert store.tag_slots["db"] - {RUN} == others


def test_a_universal_rule_sees_the_written_state_and_skips_nullified_transitions() -> None:
    seen: list[str | None] = []

    class Record(UniversalRule):
        def after(self, scope: Scope) -> None:
            validated = scope.transition.validated
            seen.append(None if validated is None else validated.name)

    retried = decide(
        [fr.RetryFailedFlows(), Record()],
        st(S.RUNNING),
        st(S.FAILED),
        run_count=1,
        empirical_policy=RETRY_ONCE,
    )
    assert retried.validated is not None and retried.validated.name == "AwaitingRetry"
    decide([RejectEverything(), Record()], st(S.RUNNING), st(S.COMPLETED))
    assert seen == ["AwaitingRetry"]  # the rejected transition wrote nothing: no `after`
