"""The task-run policies and their rules, after the reference's core task policy."""

from __future__ import annotations

from runwire_server.orchestration.bookkeeping import TASK_TRANSFORMS
from runwire_server.orchestration.engine import TERMINAL, Policy, Rule, Scope, UniversalRule
from runwire_server.orchestration.flow_rules import CopyScheduledTime, WaitForScheduledTime
from runwire_server.orchestration.rule_helpers import has_persisted_result, make_state, retry_after
from runwire_server.orchestration.states import StateType

S = StateType

# The state types in which a task run holds slots on its tags' concurrency limits.
SLOT_HOLDING_TASK_TYPES = frozenset({S.RUNNING, S.CANCELLING})


class CacheRetrieval(Rule):
    TO = frozenset({S.RUNNING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.proposed is not None
        key = t.proposed.details.get("cache_key")
        if not key or t.proposed.details.get("refresh_cache"):
            return
        cached = t.store.cached_state(key, t.now)
        if cached is not None:
            copy = make_state(
                scope,
                cached.type,
                "Cached",
                message=cached.message,
                result=cached.result,
                details={
                    k: v
                    for k, v in cached.details.items()
                    if k not in ("flow_run_id", "task_run_id")
                },
            )
            scope.reject(copy, "Retrieved state from cache")


class HandleTaskTerminalStateTransitions(Rule):
    FROM = TERMINAL

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.initial is not None and t.proposed is not None
        if t.proposed.type in (S.CANCELLING, S.PAUSED, S.CRASHED):
            scope.abort(f"Run is already {t.initial.type.value}.")
            return
        if (
            t.initial.type is S.COMPLETED
            and has_persisted_result(t.initial)
            and not t.proposed.is_final
        ):
            scope.reject(None, "This run is already completed.")
            return
        if not t.proposed.is_final:
            scope.notes["run_count"] = t.run.run_count
            t.run.run_count = 0  # a manual rerun gets its retries back
            if t.proposed.type is S.RUNNING and t.run.flow_run_id is not None:
                flow_run = t.store.flow_run(t.run.flow_run_id)
                if flow_run is not None and t.run.flow_run_run_count < flow_run.run_count:
                    scope.rename("Retrying")

    def cleanup(self, scope: Scope) -> None:
        if "run_count" in scope.notes:
            scope.transition.run.run_count = scope.notes["run_count"]  # type: ignore[assignment]


class PreventRunningTasksFromStoppedFlows(Rule):
    TO = frozenset({S.RUNNING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        if t.run.flow_run_id is None:
            return
        flow_run = t.store.flow_run(t.run.flow_run_id)
        message = "The enclosing flow must be running to begin task execution."
        if flow_run is None or flow_run.state is None:
            scope.abort(message)
        elif flow_run.state.type is S.PAUSED:
            details = flow_run.state.details
            scope.reject(
                make_state(
                    scope,
                    S.PAUSED,
                    "NotReady",
                    details={
                        "pause_timeout": details.get("pause_timeout"),
                        "pause_reschedule": bool(details.get("pause_reschedule")),
                    },
                ),
                "The flow is paused, new tasks can execute after resuming flow run: "
                f"{flow_run.id}.",
            )
        elif flow_run.state.type is not S.RUNNING:
            scope.abort(message)


class SecureTaskConcurrencySlots(Rule):
    TO = frozenset({S.RUNNING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        limits = t.store.tag_limits(t.run.tags)
        if not limits:
            return
        for tag, limit in sorted(limits.items()):
            if limit == 0:
                scope.abort(
                    f'The concurrency limit on tag "{tag}" is 0 and will deadlock if the task '
                    "tries to run again."
                )
                return
        full = t.store.acquire_tag_slots(limits, t.run.id)
        if full:
            scope.wait(
                t.settings.tag_slot_wait_seconds,
                f"Concurrency limit reached for tags: {', '.join(sorted(full))}",
            )
            return
        scope.notes["slots"] = True

    def cleanup(self, scope: Scope) -> None:
        if scope.notes.get("slots"):
            scope.transition.store.release_tag_slots(scope.transition.run.id)


class RetryFailedTasks(Rule):
    FROM = frozenset({S.RUNNING})
    TO = frozenset({S.FAILED})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.proposed is not None
        if t.proposed.details.get("retriable") is False:
            return
        retries = t.run.empirical_policy.get("retries")
        if retries is None or t.run.run_count > retries:
            return
        delays = t.run.empirical_policy.get("retry_delays") or [0]
        delay = float(delays[min(max(t.run.run_count - 1, 0), len(delays) - 1)])
        retry_after(scope, delay)


class RenameReruns(Rule):
    TO = frozenset({S.RUNNING})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        if t.run.run_count > 0:
            awaiting = t.initial is not None and t.initial.name == "AwaitingRetry"
            scope.rename("Retrying" if awaiting else "Rerunning")


class UpdateFlowRunTrackerOnTasks(Rule):
    TO = frozenset({S.RUNNING})

    def after(self, scope: Scope) -> None:
        t = scope.transition
        if t.run.flow_run_id is None:
            return
        flow_run = t.store.flow_run(t.run.flow_run_id)
        if flow_run is not None:
            t.run.flow_run_run_count = flow_run.run_count


class CacheInsertion(Rule):
    TO = frozenset({S.COMPLETED})

    def before(self, scope: Scope) -> None:
        t = scope.transition
        assert t.proposed is not None
        key = t.proposed.details.get("cache_key")
        limit = t.settings.max_cache_key_length
        if key and len(key) > limit:
            # The state is still written; the status tells the client its key was refused.
            scope.reject(
                t.proposed, f"Cache key exceeded maximum allowed length of {limit} characters."
            )
            scope.notes["refused"] = True

    def after(self, scope: Scope) -> None:
        t = scope.transition
        if scope.notes.get("refused") or t.validated is None:
            return
        key = t.validated.details.get("cache_key")
        if key:
            t.store.insert_cache(key, t.validated.details.get("cache_expiration"), t.validated)


class ReleaseTaskConcurrencySlots(UniversalRule):
    """A task run holds its tag slots only while its written state is RUNNING or CANCELLING:
    a failure rewritten to AwaitingRetry frees them for the whole retry delay."""

    def after(self, scope: Scope) -> None:
        t = scope.transition
        if t.validated is not None and t.validated.type not in SLOT_HOLDING_TASK_TYPES:
            t.store.release_tag_slots(t.run.id)


CORE_TASK_POLICY = Policy(
    "CoreTaskPolicy",
    rules=(
        CacheRetrieval(),
        HandleTaskTerminalStateTransitions(),
        PreventRunningTasksFromStoppedFlows(),
        SecureTaskConcurrencySlots(),
        CopyScheduledTime(),
        WaitForScheduledTime(),
        RetryFailedTasks(),
        RenameReruns(),
        UpdateFlowRunTrackerOnTasks(),
        CacheInsertion(),
        ReleaseTaskConcurrencySlots(),
    ),
    transforms=TASK_TRANSFORMS,
)

MINIMAL_TASK_POLICY = Policy(
    "MinimalTaskPolicy", rules=(ReleaseTaskConcurrencySlots(),), transforms=TASK_TRANSFORMS
)
