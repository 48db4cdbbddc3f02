"""Pausing a flow run from its own code until someone resumes it, optionally with input."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from runwire._engine import RunRefused
from runwire._run_context import flow_run_context, heartbeat_seconds
from runwire._values import proposed_state
from runwire.states import StateType

M = TypeVar("M")


def pause_flow_run(
    timeout: float = 3600,
    *,
    wait_for_input: type[M] | dict[str, Any] | None = None,
    key: str | None = None,
) -> M | dict[str, Any] | None:
    """Pause the flow run this code runs in until it is resumed (`runwire flow-run resume`, or
    ResumeFlowRun), at most `timeout` seconds, after which the server fails the run.

    `wait_for_input` is a pydantic model (or a JSON Schema): the run is resumed only with input
    that matches, which this returns (as the model); without it this returns None.
    """
    context = flow_run_context.get()
    if context is None:
        raise RuntimeError("pause_flow_run is called from inside a flow run")
    with context.lock:
        context.pauses += 1
        count = context.pauses
    schema: dict[str, Any] | None
    if wait_for_input is None or isinstance(wait_for_input, dict):
        schema = wait_for_input
    else:
        schema = wait_for_input.model_json_schema()  # type: ignore[attr-defined]
    state = proposed_state(
        StateType.PAUSED,
        pause_timeout=datetime.now(UTC) + timedelta(seconds=timeout),
        pause_key=key or f"pause-{count}",
    )
    if schema is not None:
        state.state_details.run_input_schema.update(schema)
    # Tasks that start while the run is paused ask the server first (it holds them back), and
    # the tasks that ran before the pause are written before it.
    batching, context.batching = context.batching, False
    try:
        client = context.client
        context.reporter.drain()
        paused = client.set_flow_run_state(context.flow_run_id, state)
        if paused.state is None or paused.state.type is not StateType.PAUSED:
            raise RunRefused(f"flow run {context.flow_run_id}: {paused.reason or paused.status}")
        every = min(1.0, heartbeat_seconds())
        while True:
            time.sleep(every)
            now = client.heartbeat_flow_run(context.flow_run_id).state
            if now is None or now.type is StateType.PAUSED:
                continue
            if now.type is not StateType.RUNNING:
                raise RunRefused(f"flow run {context.flow_run_id} was not resumed: {now.name}")
            given = now.details.get("run_input")
            if schema is None:
                return None
            if isinstance(wait_for_input, dict) or given is None:
                return dict(given) if given is not None else None
            model: Any = wait_for_input
            validated: M = model.model_validate(given)
            return validated
    finally:
        context.batching = batching
