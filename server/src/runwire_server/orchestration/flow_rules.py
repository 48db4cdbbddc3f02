"""The flow-run policies and their rules, after the reference's core flow policy."""

from __future__ import annotations

import uuid

from runwire_server.orchestration.bookkeeping import FLOW_TRANSFORMS
from runwire_server.orchestration.deployment_slots import (
    ReleaseFlowConcurrencySlots as ReleaseFlowConcurrencySlots,
)
from runwire_server.orchestration.deployment_slots import (
    SecureFlowConcurrencySlots as SecureFlowConcurrencySlots,
)
from runwire_server.orchestration.deployment_slots import (
    ValidateDeploymentConcurrencyAtRunning as ValidateDeploymentConcurrencyAtRunning,
)
from runwire_server.orchestration.engine import (
    ALL_TYPES,
    TERMINAL,
    Policy,
    Rule,
    Scope,
)
from runwire_server.orchestration.rule_helpers import (
    copy_scheduled_time,
    has_persisted_result,
    make_state,
    retry_after,
)
from runwire_server.orchestration.states import StateType

S = StateType


class PreventDuplicateTransitions(Rule):
    def before(self, scope: Scope) -> None:
        t = scope.transition
        if t.initial is None or t.proposed is None:
            return
        old = t.initial.details.get("transition_id")
        new = t.proposed.details.get("transition_id")
        if old and new and old == new:
            scope.reject(None, "This run has already made this state transition.")


class HandleFlowTerminalStateTransitions(Rule):
    FROM = TERMINAL

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.initial is not None and t.proposed is not None
        if t.proposed.type in (S.CANCELLING, S.PAUSED, S.CRASHED):
            scope.abort(f"Run is already in terminal state {t.initial.type.value}.")
            return
        if t.initial.type is S.COMPLETED and has_persisted_result(t.initial):
            if not t.proposed.is_final:
                scope.reject(None, "Run is already COMPLETED.")
                return
            if t.proposed.type is S.COMPLETED and not has_persisted_result(t.proposed):
                scope.reject(None, _RESULT_LOSS)
                return
        if t.proposed.type is S.SCHEDULED and t.run.deployment_id is None:
            scope.abort("Cannot reschedule a run without an associated deployment.")
            return
        if not t.proposed.is_final:
            scope.notes["policy"] = t.run.empirical_policy
            t.run.empirical_policy = {
                **t.run.empirical_policy,
                "resuming": False,
                "pause_keys": [],
                "retry_type": "reschedule" if t.proposed.type is S.SCHEDULED else None,
            }

    def cleanup(self, scope: Scope) -> None:
        if "policy" in scope.notes:
            scope.transition.run.empirical_policy = scope.notes["policy"]  # type: ignore[assignment]


_RESULT_LOSS = (
    "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not."
)


class PreventResultDataLoss(Rule):
    """Kept even with force: a persisted result is never silently replaced."""

    FROM = frozenset({S.COMPLETED})
    TO = frozenset({S.COMPLETED})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        if has_persisted_result(t.initial) and not has_persisted_result(t.proposed):
            scope.reject(None, _RESULT_LOSS)


class EnforceCancellingToCancelledTransition(Rule):
    FROM = frozenset({S.CANCELLING})
    TO = ALL_TYPES - {S.CANCELLED}

    def before(self, scope: Scope) -> None:
        scope.reject(
            None, "Cannot transition flows that are cancelling to a state other than Cancelled."
        )


class BypassCancellingFlowRunsWithNoInfra(Rule):
    FROM = frozenset({S.SCHEDULED, S.PAUSED})
    TO = frozenset({S.CANCELLING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.initial is not None
        if (t.initial.type is S.SCHEDULED and not t.run.infrastructure_pid) or (
            t.initial.name == "Resuming"
        ):
            scope.reject(
                make_state(scope, S.CANCELLED),
                "Scheduled flow run has no infrastructure to terminate.",
            )
        elif t.initial.type is S.PAUSED and t.initial.details.get("pause_reschedule"):
            scope.reject(
                make_state(scope, S.CANCELLED),
                "Suspended flow run has no infrastructure to terminate.",
            )


class CancelRunsWhoseLeaseEnded(Rule):
    """A RUNNING run whose lease has ended has no reporter left to finish a cancellation, so
    it is cancelled at once rather than left CANCELLING."""

    FROM = frozenset({S.RUNNING})
    TO = frozenset({S.CANCELLING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        if t.run.lease_expires is not None and t.run.lease_expires <= t.now:
            scope.reject(
                make_state(scope, S.CANCELLED),
                "No process reports this run any more (its lease ended): cancelled at once.",
            )


class PreventPendingTransitions(Rule):
    """Only one worker can claim a run: PENDING is entered once per attempt."""

    FROM = frozenset({S.PENDING, S.CANCELLING, S.RUNNING, S.CANCELLED})
    TO = frozenset({S.PENDING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.initial is not None and t.proposed is not None
        if (
            t.initial.type is S.PENDING
            and t.proposed.name != t.initial.name
            and t.proposed.name != "Pending"
        ):
            copy_scheduled_time(scope)
            return
        scope.abort(
            f"This run is in a {t.initial.type.value} state "
            "and cannot transition to a PENDING state."
        )


class EnsureOnlyScheduledFlowsMarkedLate(Rule):
    TO = frozenset({S.SCHEDULED})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.proposed is not None
        if t.proposed.name != "Late":
            return
        if t.initial is None or t.initial.type is not S.SCHEDULED:
            scope.reject(None, "Only scheduled flows can be marked late.")
        elif t.initial.name == "Late":
            scope.reject(None, "This flow run is already marked late.")


class HandlePausingFlows(Rule):
    TO = frozenset({S.PAUSED})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.proposed is not None
        verb = "suspend" if t.proposed.name == "Suspended" else "pause"
        if t.initial is None:
            scope.abort(f"Cannot {verb} flows with no state.")
            return
        if t.initial.type is not S.RUNNING:
            scope.reject(None, f"Cannot {verb} flows that are not currently running.")
            return
        key = t.proposed.details.get("pause_key") or str(uuid.uuid4())
        if key in t.run.empirical_policy.get("pause_keys", []):
            scope.reject(None, f"This {verb} has already fired.")
            return
        if t.proposed.details.get("pause_reschedule"):
            if t.run.parent_task_run_id is not None:
                scope.abort(f"Cannot {verb} subflows.")
                return
            if t.run.deployment_id is None:
                scope.abort(f"Cannot {verb} flows without a deployment.")
                return
        scope.notes["key"] = key

    def after(self, scope: Scope) -> None:
        if "key" not in scope.notes:  # this rule refused the pause itself
            return
        run = scope.transition.run
        keys = [*run.empirical_policy.get("pause_keys", []), scope.notes["key"]]
        run.empirical_policy = {**run.empirical_policy, "pause_keys": keys}


class HandleResumingPausedFlows(Rule):
    FROM = frozenset({S.PAUSED})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.initial is not None and t.proposed is not None
        if not (t.proposed.type in (S.RUNNING, S.SCHEDULED) or t.proposed.is_final):
            scope.reject(
                None,
                f"This run cannot transition to the {t.proposed.type.value} state "
                f"from the {t.initial.type.value} state.",
            )
            return
        if t.initial.details.get("pause_reschedule") and t.run.deployment_id is None:
            scope.reject(
                None, f"Cannot reschedule a {t.initial.name.lower()} flow run without a deployment."
            )
            return
        timeout = t.initial.details.get("pause_timeout")
        if timeout is not None and timeout < t.now:
            verb = "suspend" if t.initial.name == "Suspended" else "pause"
            scope.reject(
                make_state(
                    scope,
                    S.FAILED,
                    message=f"The flow was {t.initial.name.lower()} and never resumed.",
                ),
                f"The flow run {verb} has timed out and can no longer resume.",
            )
            return
        scope.notes["resuming"] = True

    def after(self, scope: Scope) -> None:
        # Only a run rescheduled to resume (a suspended one) is still "resuming" afterwards: the
        # flag keeps its coming RUNNING from counting as a new run. A run resumed straight to
        # RUNNING has finished resuming.
        validated = scope.transition.validated
        if not scope.notes.get("resuming") or validated is None:
            return
        if validated.type is not S.SCHEDULED:
            return
        run = scope.transition.run
        run.empirical_policy = {**run.empirical_policy, "resuming": True}


class CopyScheduledTime(Rule):
    FROM = frozenset({S.SCHEDULED})
    TO = frozenset({S.PENDING})

    def before(self, scope: Scope) -> None:
        copy_scheduled_time(scope)


class WaitForScheduledTime(Rule):
    FROM = frozenset({S.SCHEDULED, S.PENDING})
    TO = frozenset({S.RUNNING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.initial is not None
        scheduled = t.initial.details.get("scheduled_time")
        if scheduled is None:
            return
        delay = round((scheduled - t.now).total_seconds())
        if delay > 0:
            scope.wait(delay, "Scheduled time is in the future")


class RetryFailedFlows(Rule):
    FROM = frozenset({S.RUNNING})
    TO = frozenset({S.FAILED})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.proposed is not None
        policy = t.run.empirical_policy
        retries = policy.get("retries")
        if retries is None or t.run.run_count > retries:
            if policy.get("retry_type") is not None:
                t.run.empirical_policy = {**policy, "retry_type": None}
            return
        delay = float(policy.get("retry_delay") or 0)
        t.run.empirical_policy = {
            **policy,
            "resuming": False,
            "pause_keys": [],
            "retry_type": "in_process",
        }
        retry_after(scope, delay)


CORE_FLOW_POLICY = Policy(
    "CoreFlowPolicy",
    rules=(
        PreventDuplicateTransitions(),
        HandleFlowTerminalStateTransitions(),
        EnforceCancellingToCancelledTransition(),
        BypassCancellingFlowRunsWithNoInfra(),
        CancelRunsWhoseLeaseEnded(),
        PreventPendingTransitions(),
        ValidateDeploymentConcurrencyAtRunning(),
        SecureFlowConcurrencySlots(),
        EnsureOnlyScheduledFlowsMarkedLate(),
        HandlePausingFlows(),
        HandleResumingPausedFlows(),
        CopyScheduledTime(),
        WaitForScheduledTime(),
        RetryFailedFlows(),
        ReleaseFlowConcurrencySlots(),
    ),
    transforms=FLOW_TRANSFORMS,
)

# force=true: only what protects data and frees resources.
MINIMAL_FLOW_POLICY = Policy(
    "MinimalFlowPolicy",
    rules=(
        PreventResultDataLoss(),
        BypassCancellingFlowRunsWithNoInfra(),
        CancelRunsWhoseLeaseEnded(),
        ReleaseFlowConcurrencySlots(),
    ),
    transforms=FLOW_TRANSFORMS,
)
