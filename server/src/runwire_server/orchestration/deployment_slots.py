"""A deployment's concurrency limit: the rules that take, check and free a flow run's slot."""

from __future__ import annotations

import uuid
from datetime import timedelta

from runwire_server.orchestration.context import CollisionStrategy
from runwire_server.orchestration.engine import ALL_TYPES, Rule, Scope, UniversalRule
from runwire_server.orchestration.rule_helpers import make_state
from runwire_server.orchestration.states import StateType

S = StateType

# The state types in which a flow run holds its deployment's concurrency slot.
SLOT_HOLDING_FLOW_TYPES = frozenset({S.PENDING, S.RUNNING, S.CANCELLING})


class SecureFlowConcurrencySlots(Rule):
    """A deployment's concurrency limit: claiming a run takes one of its slots."""

    FROM = ALL_TYPES - SLOT_HOLDING_FLOW_TYPES
    TO = frozenset({S.PENDING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        if t.run.deployment_id is None:
            return
        deployment = t.store.deployment(t.run.deployment_id)
        if deployment is None:
            scope.abort("Deployment not found.")
            return
        if deployment.concurrency_limit is None:
            return
        if deployment.concurrency_limit == 0:
            scope.abort(
                "The deployment concurrency limit is 0. The flow will deadlock if submitted."
            )
            return
        if t.store.acquire_deployment_slot(deployment, t.run.id):
            scope.notes["slot"] = deployment.id
            return
        if deployment.collision_strategy is CollisionStrategy.CANCEL_NEW:
            scope.reject(
                make_state(scope, S.CANCELLED, message="Deployment concurrency limit reached."),
                "Deployment concurrency limit reached.",
            )
            return
        wait = t.settings.deployment_slot_wait_seconds
        scope.reject(
            make_state(
                scope,
                S.SCHEDULED,
                "AwaitingConcurrencySlot",
                details={"scheduled_time": t.now + timedelta(seconds=wait)},
            ),
            "Deployment concurrency limit reached.",
        )

    def cleanup(self, scope: Scope) -> None:
        slot = scope.notes.get("slot")
        if isinstance(slot, uuid.UUID):
            scope.transition.store.release_deployment_slot(slot, scope.transition.run.id)


class ValidateDeploymentConcurrencyAtRunning(Rule):
    """A run that starts must still hold its deployment slot (or get one back)."""

    FROM = frozenset({S.PENDING})
    TO = frozenset({S.RUNNING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        if t.run.deployment_id is None:
            return
        deployment = t.store.deployment(t.run.deployment_id)
        if deployment is None or deployment.concurrency_limit is None:
            return
        if t.store.holds_deployment_slot(deployment.id, t.run.id):
            return
        if deployment.concurrency_limit > 0 and t.store.acquire_deployment_slot(
            deployment, t.run.id
        ):
            return
        lost = "Deployment concurrency slot lost during provisioning - no slots available."
        scope.reject(make_state(scope, S.CANCELLED, message=lost), lost)


class ReleaseFlowConcurrencySlots(UniversalRule):
    """A run whose written state leaves PENDING, RUNNING or CANCELLING for another type frees
    its deployment slot: a failure rewritten to AwaitingRetry (SCHEDULED) frees it too."""

    def after(self, scope: Scope) -> None:
        t = scope.transition
        if t.run.deployment_id is None or t.validated is None:
            return
        if t.initial_type in SLOT_HOLDING_FLOW_TYPES and t.validated.type not in (
            SLOT_HOLDING_FLOW_TYPES
        ):
            t.store.release_deployment_slot(t.run.deployment_id, t.run.id)
