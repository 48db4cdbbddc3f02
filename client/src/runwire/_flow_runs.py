"""Flow runs: the plans of their calls."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import field_mask_pb2, struct_pb2

from runwire._plans import Owner, Paged, Rpc, Step, Steps, Unary
from runwire._values import (
    GraphNode,
    HistoryInterval,
    Lease,
    OrchestrationResult,
    duration,
    proposed_state,
)
from runwire._values import timestamp as _timestamp
from runwire.states import State, StateType
from runwire.v1 import filters_pb2, flow_run_pb2, flow_run_service_pb2, state_pb2
from runwire.views import FlowRunView

FLOW_RUNS = "flow_runs"
_STRUCTS = ("parameters", "context", "run_config")


def _result(response: Any, _: Owner) -> OrchestrationResult:
    return OrchestrationResult.from_proto(response.result)


def create_flow_run(
    flow_id: str,
    *,
    name: str = "",
    parameters: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    idempotency_key: str = "",
    deployment_id: str = "",
    state: state_pb2.State | None = None,
    retries: int | None = None,
    retry_delay: timedelta | float | None = None,
    parent_task_run_id: str = "",
) -> Unary[FlowRunView]:
    """Create a run of a flow; with an `idempotency_key`, a second create with the same key
    returns the first run instead of making another. `retries` and `retry_delay` are the
    run's retry policy; `parent_task_run_id` makes it a subflow of that task run's flow run."""
    params = struct_pb2.Struct()
    params.update(dict(parameters or {}))
    run = flow_run_pb2.FlowRun(
        flow_id=flow_id,
        name=name,
        parameters=params,
        tags=list(tags),
        labels=dict(labels or {}),
        idempotency_key=idempotency_key,
        deployment_id=deployment_id,
        state=state,
        parent_task_run_id=parent_task_run_id,
        empirical_policy=flow_run_pb2.FlowRunPolicy(
            retries=retries, retry_delay=None if retry_delay is None else duration(retry_delay)
        ),
    )
    return Unary(
        Rpc(FLOW_RUNS, "CreateFlowRun"),
        flow_run_service_pb2.CreateFlowRunRequest(flow_run=run),
        lambda response, owner: FlowRunView.from_proto(owner, response.flow_run),
        # Without an idempotency key a retried create could make two runs.
        idempotent=bool(idempotency_key),
    )


def _states(flow_run_id: str) -> Paged[State]:
    return Paged(
        Rpc(FLOW_RUNS, "ListFlowRunStates"),
        flow_run_service_pb2.ListFlowRunStatesRequest(flow_run_id=flow_run_id, page_size=200),
        "states",
        lambda state, _: State.from_proto(state),
    )


def get_flow_run(flow_run_id: str) -> Steps[FlowRunView]:
    """The flow run with this id, with its states, oldest first."""

    def steps(owner: Owner) -> Generator[Step, Any, FlowRunView]:
        run = yield Unary(
            Rpc(FLOW_RUNS, "GetFlowRun"),
            flow_run_service_pb2.GetFlowRunRequest(flow_run_id=flow_run_id),
            lambda response, _: response.flow_run,
        )
        states: list[State] = yield _states(flow_run_id)
        return FlowRunView.from_proto(owner, run, tuple(sorted(states, key=lambda s: s.timestamp)))

    return Steps(steps)


def list_flow_runs(
    criteria: filters_pb2.FlowRunCriteria | None = None,
    *,
    sort: filters_pb2.FlowRunSort.ValueType = filters_pb2.FLOW_RUN_SORT_ID_DESC,
    page_size: int = 200,
    limit: int | None = None,
) -> Paged[FlowRunView]:
    """The runs that match `criteria` (see runwire.filters), at most `limit` of them."""
    return Paged(
        Rpc(FLOW_RUNS, "ListFlowRuns"),
        flow_run_service_pb2.ListFlowRunsRequest(filter=criteria, sort=sort, page_size=page_size),
        "flow_runs",
        lambda run, owner: FlowRunView.from_proto(owner, run),
        limit=limit,
    )


def set_flow_run_state(
    flow_run_id: str,
    state: state_pb2.State,
    *,
    force: bool = False,
    lease: timedelta | float | None = None,
) -> Unary[OrchestrationResult]:
    """Propose a state for the run (see `proposed_state`); `force` skips the rules. A run
    that enters RUNNING holds a lease of `lease` (a timedelta or seconds; None: the server's
    default), which `heartbeat_flow_run` renews."""
    return Unary(
        Rpc(FLOW_RUNS, "SetFlowRunState"),
        flow_run_service_pb2.SetFlowRunStateRequest(
            flow_run_id=flow_run_id,
            state=state,
            force=force,
            lease_duration=None if lease is None else duration(lease),
        ),
        _result,
        # Safe to repeat only with a transition id: the server refuses the duplicate.
        idempotent=bool(state.state_details.transition_id),
    )


def heartbeat_flow_run(
    flow_run_id: str,
    *,
    lease: timedelta | float | None = None,
    task_run_ids: Sequence[str] = (),
) -> Unary[Lease]:
    """Renew the run's lease (for `lease`, or the length it took) and those of the listed task
    runs of it; the answer says the run's state, so a reporter learns of a cancellation."""
    return Unary(
        Rpc(FLOW_RUNS, "HeartbeatFlowRun"),
        flow_run_service_pb2.HeartbeatFlowRunRequest(
            flow_run_id=flow_run_id,
            lease_duration=None if lease is None else duration(lease),
            task_run_ids=list(task_run_ids),
        ),
        lambda response, _: Lease.from_proto(response),
    )


def resume_flow_run(
    flow_run_id: str, run_input: Mapping[str, Any] | None = None
) -> Unary[OrchestrationResult]:
    """Resume a paused run. A run that waits for input is resumed only with `run_input` that
    matches the schema it paused with; otherwise the result is a REJECT saying why."""
    given = None
    if run_input is not None:
        given = struct_pb2.Struct()
        given.update(dict(run_input))
    return Unary(
        Rpc(FLOW_RUNS, "ResumeFlowRun"),
        flow_run_service_pb2.ResumeFlowRunRequest(flow_run_id=flow_run_id, run_input=given),
        _result,
        idempotent=False,
    )


def cancel_flow_run(flow_run_id: str) -> Unary[OrchestrationResult]:
    """Ask for the run to be cancelled (it moves to CANCELLING)."""
    return set_flow_run_state(flow_run_id, proposed_state(StateType.CANCELLING))


def retry_flow_run(
    flow_run_id: str, *, message: str = "Retry requested"
) -> Unary[OrchestrationResult]:
    """Send a finished run back to be run again: propose SCHEDULED (named AwaitingRetry, due
    now), as Prefect's `flow-run retry` does. The rules decide: a run without a deployment
    cannot be rescheduled, and one that is not finished has nothing to retry."""
    state = proposed_state(
        StateType.SCHEDULED, name="AwaitingRetry", message=message, scheduled_time=_now()
    )
    return set_flow_run_state(flow_run_id, state)


def _now() -> datetime:
    return datetime.now(UTC)


def delete_flow_run(flow_run_id: str) -> Unary[None]:
    """Delete the run with its states, task runs and logs."""
    return Unary(
        Rpc(FLOW_RUNS, "DeleteFlowRun"),
        flow_run_service_pb2.DeleteFlowRunRequest(flow_run_id=flow_run_id),
        lambda response, _: None,
    )


def list_flow_run_states(flow_run_id: str) -> Steps[list[State]]:
    """Every state the run has been in."""

    def steps(owner: Owner) -> Generator[Step, Any, list[State]]:
        states: list[State] = yield _states(flow_run_id)
        return states

    return Steps(steps)


def update_flow_run(flow_run_id: str, **changes: Any) -> Unary[FlowRunView]:
    """Change fields of a run: name, flow_version, parameters, tags, labels, ..."""
    run = flow_run_pb2.FlowRun(id=flow_run_id)
    for name, value in changes.items():
        if name in _STRUCTS:
            getattr(run, name).update(dict(value))
        elif name == "tags":
            run.tags.extend(value)
        elif name == "labels":
            run.labels.update(dict(value))
        else:
            setattr(run, name, value)
    return Unary(
        Rpc(FLOW_RUNS, "UpdateFlowRun"),
        flow_run_service_pb2.UpdateFlowRunRequest(
            flow_run=run, update_mask=field_mask_pb2.FieldMask(paths=list(changes))
        ),
        lambda response, owner: FlowRunView.from_proto(owner, response.flow_run),
    )


def get_flow_run_history(
    start: datetime,
    end: datetime,
    interval: timedelta,
    criteria: filters_pb2.FlowRunCriteria | None = None,
) -> Unary[list[HistoryInterval]]:
    """Runs expected to start in each interval, counted by state."""
    request = flow_run_service_pb2.GetFlowRunHistoryRequest(
        history_start=_timestamp(start), history_end=_timestamp(end), filter=criteria
    )
    request.history_interval.FromTimedelta(interval)
    return Unary(
        Rpc(FLOW_RUNS, "GetFlowRunHistory"),
        request,
        lambda response, _: [HistoryInterval.from_proto(i) for i in response.intervals],
    )


def count_flow_runs(criteria: filters_pb2.FlowRunCriteria | None = None) -> Unary[int]:
    """How many runs match `criteria`."""
    return Unary(
        Rpc(FLOW_RUNS, "CountFlowRuns"),
        flow_run_service_pb2.CountFlowRunsRequest(filter=criteria),
        lambda response, _: int(response.count),
    )


def get_flow_run_graph(flow_run_id: str) -> Unary[list[GraphNode]]:
    """The run's task runs and the task runs each one's inputs came from."""
    return Unary(
        Rpc(FLOW_RUNS, "GetFlowRunGraph"),
        flow_run_service_pb2.GetFlowRunGraphRequest(flow_run_id=flow_run_id),
        lambda response, _: [GraphNode.from_proto(node) for node in response.nodes],
    )
