"""The rule engine: a policy is an ordered list of rules, applied as nested scopes.

Rules are entered in policy order (`before`), then the bookkeeping transforms run innermost, then
the state is written, then rules are left in reverse order: `after` for a rule whose transition
still holds, `cleanup` for one whose transition was changed by a rule nested inside it (so it can
undo side effects such as a concurrency slot). A rule applies only to the from-types and
to-types it names, judged on the proposed state as it stands when the rule is entered.

A universal rule (the reference's universal transforms) names no types: it is entered for every
transition that still proposes a state and, on the way out, sees the state that was actually
written, whatever the rules in between made of the proposal. Decisions that must follow the
written state, such as freeing a concurrency slot, belong in one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from runwire_server.orchestration.context import (
    OrchestrationStore,
    RunFacts,
    Settings,
    Status,
    Transition,
)
from runwire_server.orchestration.states import TERMINAL_TYPES, State, StateType

log = structlog.get_logger("runwire.orchestration")

ALL_TYPES: frozenset[StateType | None] = frozenset({*StateType, None})
TERMINAL: frozenset[StateType | None] = frozenset(TERMINAL_TYPES)


class RuleError(Exception):
    """Raised by a rule action used at the wrong moment (a bug in a rule, not client input)."""


@dataclass
class Scope:
    """One rule's view of one transition: the types it was entered for and its own notes."""

    transition: Transition
    from_type: StateType | None
    to_type: StateType | None
    notes: dict[str, object] = field(default_factory=dict)

    # --- actions a rule takes in `before` ---------------------------------------------------

    def reject(self, state: State | None, reason: str) -> None:
        """Refuse the proposal; write `state` instead, or nothing if it is None."""
        t = self.transition
        if state is None and t.initial is None:
            raise RuleError("cannot reject to the current state of a run that has none")
        t.proposed = state
        t.status = Status.REJECT
        t.reason = reason
        t.delay_seconds = None
        self.to_type = None if state is None else state.type  # a rejecting rule does not fizzle

    def wait(self, delay_seconds: int, reason: str) -> None:
        t = self.transition
        t.proposed = None
        t.status = Status.WAIT
        t.reason = reason
        t.delay_seconds = delay_seconds
        self.to_type = None

    def abort(self, reason: str) -> None:
        t = self.transition
        t.proposed = None
        t.status = Status.ABORT
        t.reason = reason
        t.delay_seconds = None
        self.to_type = None

    def rename(self, name: str) -> None:
        t = self.transition
        if t.proposed is not None:
            t.proposed = t.proposed.replace(name=name)

    @property
    def invalid(self) -> bool:
        t = self.transition
        return t.initial_type != self.from_type or t.proposed_type != self.to_type


class Rule:
    """Base of every orchestration rule. Subclasses set FROM and TO and override hooks."""

    FROM: frozenset[StateType | None] = ALL_TYPES
    TO: frozenset[StateType | None] = ALL_TYPES

    def before(self, scope: Scope) -> None:
        """Decide on the proposal; may reject, wait, abort or rename."""

    def after(self, scope: Scope) -> None:
        """Side effects once the transition this rule was entered for has been written."""

    def cleanup(self, scope: Scope) -> None:
        """Undo side effects of `before` when a nested rule changed the transition."""

    def applies(self, from_type: StateType | None, to_type: StateType | None) -> bool:
        return from_type in self.FROM and to_type in self.TO

    @property
    def name(self) -> str:
        return type(self).__name__


class UniversalRule(Rule):
    """A rule for every transition: `before` runs while a state is still proposed, `after`
    once one was written (never `cleanup`), judged on the written state."""

    def applies(self, from_type: StateType | None, to_type: StateType | None) -> bool:
        return True


class Transform:
    """A bookkeeping transform: runs innermost on every transition that still proposes a state."""

    def before(self, transition: Transition) -> None:
        """Change the run's facts for the state about to be written."""

    def after(self, transition: Transition) -> None:
        """Side effects after the state was written."""


@dataclass(frozen=True)
class Policy:
    name: str
    rules: Sequence[Rule]
    transforms: Sequence[Transform]


# Writes a state for the run and returns it as stored (with its id and final timestamp).
Writer = Callable[[State], State]


def orchestrate(
    policy: Policy,
    run: RunFacts,
    initial: State | None,
    proposed: State,
    *,
    now: datetime,
    store: OrchestrationStore,
    write: Writer,
    settings: Settings | None = None,
    passthrough: tuple[type[BaseException], ...] = (),
) -> Transition:
    """Run `policy` on one proposal and write the resulting state, if any, through `write`.

    An exception in a rule aborts the transition, except those of the `passthrough` types
    (storage failures), which propagate so that the caller can report them as retryable.
    """
    t = Transition(
        run=run,
        initial=initial,
        proposed=proposed,
        now=now,
        store=store,
        settings=settings or Settings(),
    )
    reraised: tuple[type[BaseException], ...] = (RuleError, *passthrough)
    entered: list[tuple[Rule, Scope, bool]] = []
    compiled = [r for r in policy.rules if r.applies(t.initial_type, t.proposed_type)]
    for rule in compiled:
        # Each rule is compiled for the original proposal; if an outer rule changed the
        # proposed type, the rule no longer applies and is skipped. A universal rule only
        # needs a state to still be proposed.
        universal = isinstance(rule, UniversalRule)
        scope = Scope(t, t.initial_type, t.proposed_type if universal else proposed.type)
        invalid_on_entry = t.nullified if universal else scope.invalid
        if not invalid_on_entry:
            try:
                rule.before(scope)
            except reraised:
                raise
            except Exception as exc:  # a failing rule stops orchestration, as the reference does
                log.error("orchestration.rule_failed", rule=rule.name, exc_info=exc)
                scope.abort(f"Aborting orchestration due to error in {rule.name}: !{exc!r}")
                entered.append((rule, scope, True))
                break
        entered.append((rule, scope, invalid_on_entry))

    if t.proposed is not None:
        for transform in policy.transforms:
            transform.before(t)
        t.validated = write(t.proposed)
        t.written = True
        for transform in policy.transforms:
            transform.after(t)
    else:
        t.validated = t.initial

    for rule, scope, invalid_on_entry in reversed(entered):
        if invalid_on_entry:
            continue
        if isinstance(rule, UniversalRule):
            if t.written:
                rule.after(scope)
        elif scope.invalid:
            rule.cleanup(scope)
        else:
            rule.after(scope)
    return t
