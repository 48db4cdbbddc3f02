"""Task runs: the plans of their calls."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf import field_mask_pb2

from runwire._plans import Owner, Paged, Rpc, Step, Steps, Unary
from runwire._values import Lease, OrchestrationResult, duration
from runwire.states import Result, State
from runwire.v1 import filters_pb2, state_pb2, task_run_pb2, task_run_service_pb2
from runwire.views import TaskRunView

TASK_RUNS = "task_runs"


def _view(response: Any, owner: Owner) -> TaskRunView:
    return TaskRunView.from_proto(owner, response.task_run)


def task_run_message(
    flow_run_id: str,
    task_key: str,
    *,
    dynamic_key: str = "",
    map_index: int = -1,
    tags: Sequence[str] = (),
    retries: int = 0,
    upstream: Mapping[str, Sequence[str]] | None = None,
    state: state_pb2.State | None = None,
    retry_delays: Sequence[timedelta | float] = (),
    name: str = "",
    task_run_id: str = "",
) -> task_run_pb2.TaskRun:
    """A task run to create (see create_task_run)."""
    inputs = {
        name: task_run_pb2.TaskInputList(
            inputs=[
                task_run_pb2.TaskInput(
                    input_type=task_run_pb2.TaskInput.INPUT_TYPE_TASK_RUN, task_run_id=source
                )
                for source in sources
            ]
        )
        for name, sources in (upstream or {}).items()
    }
    return task_run_pb2.TaskRun(
        id=task_run_id,
        flow_run_id=flow_run_id,
        task_key=task_key,
        dynamic_key=dynamic_key,
        map_index=map_index,
        tags=list(tags),
        name=name,
        empirical_policy=task_run_pb2.TaskRunPolicy(
            retries=retries, retry_delays=[duration(d) for d in retry_delays]
        ),
        task_inputs=inputs,
        state=state,
    )


def create_task_run(
    flow_run_id: str,
    task_key: str,
    *,
    dynamic_key: str = "",
    map_index: int = -1,
    tags: Sequence[str] = (),
    retries: int = 0,
    upstream: Mapping[str, Sequence[str]] | None = None,
    state: state_pb2.State | None = None,
    retry_delays: Sequence[timedelta | float] = (),
    name: str = "",
) -> Unary[TaskRunView]:
    """Create (or, for the same flow run, key and dynamic key, get) a task run.

    `upstream` maps each argument name to the ids of the task runs its value came from;
    `retry_delays` are the waits before each retry (the last one repeats).
    """
    task_run = task_run_message(
        flow_run_id,
        task_key,
        dynamic_key=dynamic_key,
        map_index=map_index,
        tags=tags,
        retries=retries,
        upstream=upstream,
        state=state,
        retry_delays=retry_delays,
        name=name,
    )
    return Unary(
        Rpc(TASK_RUNS, "CreateTaskRun"),
        task_run_service_pb2.CreateTaskRunRequest(task_run=task_run),
        _view,
    )


@dataclass(frozen=True)
class ReportedTaskRun:
    """What the server made of one report of ReportTaskRuns."""

    task_run_id: str
    created: bool
    accepted_count: int
    result: OrchestrationResult

    @classmethod
    def from_proto(cls, message: task_run_service_pb2.TaskRunReportResult) -> ReportedTaskRun:
        return cls(
            message.task_run_id,
            message.created,
            message.accepted_count,
            OrchestrationResult.from_proto(message.result),
        )


def report_task_runs(
    reports: Sequence[task_run_service_pb2.TaskRunReport],
) -> Unary[list[task_run_service_pb2.TaskRunReportResult]]:
    """Create task runs with the ids the reporter chose and propose their states, in one
    call; safe to retry. The answers stay messages: a reporter reads few of them whole
    (ReportedTaskRun.from_proto)."""
    return Unary(
        Rpc(TASK_RUNS, "ReportTaskRuns"),
        task_run_service_pb2.ReportTaskRunsRequest(reports=reports),
        lambda response, _: list(response.results),
    )


def get_task_run(task_run_id: str) -> Unary[TaskRunView]:
    """The task run with this id."""
    return Unary(
        Rpc(TASK_RUNS, "GetTaskRun"),
        task_run_service_pb2.GetTaskRunRequest(task_run_id=task_run_id),
        _view,
    )


def get_task_run_by_slug(
    task_slug: str, flow_run_id: str, map_index: int = -1
) -> Unary[TaskRunView]:
    """The flow run's task run with this slug (its task key) and map index."""
    return Unary(
        Rpc(TASK_RUNS, "GetTaskRunBySlug"),
        task_run_service_pb2.GetTaskRunBySlugRequest(
            flow_run_id=flow_run_id, task_slug=task_slug, map_index=map_index
        ),
        _view,
    )


def _load(response: Any, _: Owner) -> Any:
    if response.child_results:
        return [Result.from_proto(r).load() for r in response.child_results]
    return Result.from_proto(response.result).load()


def get_task_run_result(task_run_id: str) -> Unary[Any]:
    """A finished task run's return value, loaded; a mapped parent's is its children's, in
    map order."""
    return Unary(
        Rpc(TASK_RUNS, "GetTaskRunResult"),
        task_run_service_pb2.GetTaskRunResultRequest(task_run_id=task_run_id),
        _load,
    )


def set_task_run_state(
    task_run_id: str,
    state: state_pb2.State,
    *,
    force: bool = False,
    lease: timedelta | float | None = None,
) -> Unary[OrchestrationResult]:
    """Propose a state for the task run (see `proposed_state`); `force` skips the rules. A
    task run that enters RUNNING holds a lease of `lease` (None: the server's default)."""
    return Unary(
        Rpc(TASK_RUNS, "SetTaskRunState"),
        task_run_service_pb2.SetTaskRunStateRequest(
            task_run_id=task_run_id,
            state=state,
            force=force,
            lease_duration=None if lease is None else duration(lease),
        ),
        lambda response, _: OrchestrationResult.from_proto(response.result),
        idempotent=False,
    )


def update_task_run(
    task_run_id: str, *, name: str | None = None, tags: Sequence[str] | None = None
) -> Unary[TaskRunView]:
    """Rename a task run, or replace its tags; what is not given stays as it is."""
    run = task_run_pb2.TaskRun(id=task_run_id, name=name or "", tags=list(tags or ()))
    paths = [path for path, value in (("name", name), ("tags", tags)) if value is not None]
    return Unary(
        Rpc(TASK_RUNS, "UpdateTaskRun"),
        task_run_service_pb2.UpdateTaskRunRequest(
            task_run=run, update_mask=field_mask_pb2.FieldMask(paths=paths)
        ),
        lambda response, owner: TaskRunView.from_proto(owner, response.task_run),
    )


def heartbeat_task_run(task_run_id: str, *, lease: timedelta | float | None = None) -> Unary[Lease]:
    """Renew the task run's lease; the answer says its state."""
    return Unary(
        Rpc(TASK_RUNS, "HeartbeatTaskRun"),
        task_run_service_pb2.HeartbeatTaskRunRequest(
            task_run_id=task_run_id, lease_duration=None if lease is None else duration(lease)
        ),
        lambda response, _: Lease.from_proto(response),
    )


def list_task_runs(
    criteria: task_run_service_pb2.TaskRunCriteria | None = None,
    *,
    sort: filters_pb2.TaskRunSort.ValueType = filters_pb2.TASK_RUN_SORT_ID_DESC,
    page_size: int = 200,
    limit: int | None = None,
) -> Paged[TaskRunView]:
    """The task runs that match `criteria` (see runwire.filters.task_runs), newest first, at
    most `limit` of them."""
    return Paged(
        Rpc(TASK_RUNS, "ListTaskRuns"),
        task_run_service_pb2.ListTaskRunsRequest(filter=criteria, sort=sort, page_size=page_size),
        "task_runs",
        _listed,
        limit=limit,
    )


def _listed(message: Any, owner: Owner) -> TaskRunView:
    return TaskRunView.from_proto(owner, message)


def list_task_run_states(task_run_id: str) -> Steps[list[State]]:
    """Every state the task run has been in, oldest first."""
    request = task_run_service_pb2.ListTaskRunStatesRequest(task_run_id=task_run_id, page_size=200)

    def steps(owner: Owner) -> Generator[Step, Any, list[State]]:
        states: list[State] = yield Paged(
            Rpc(TASK_RUNS, "ListTaskRunStates"),
            request,
            "states",
            lambda state, _: State.from_proto(state),
        )
        return states

    return Steps(steps)


def task_run_messages(
    flow_run_id: str, **task_run_filter: Any
) -> Steps[list[task_run_pb2.TaskRun]]:
    """A flow run's task runs as raw messages, oldest first (the views build on this);
    `task_run_filter` adds TaskRunFilter fields."""
    criteria = task_run_service_pb2.TaskRunCriteria(
        task_runs=filters_pb2.TaskRunFilter(
            flow_run_id=filters_pb2.StringFilter(
                any_of=filters_pb2.StringList(values=[flow_run_id])
            ),
            **task_run_filter,
        )
    )
    request = task_run_service_pb2.ListTaskRunsRequest(
        filter=criteria, sort=filters_pb2.TASK_RUN_SORT_ID_ASC, page_size=200
    )

    def steps(owner: Owner) -> Generator[Step, Any, list[task_run_pb2.TaskRun]]:
        messages: list[task_run_pb2.TaskRun] = yield Paged(
            Rpc(TASK_RUNS, "ListTaskRuns"), request, "task_runs", lambda item, _: item
        )
        return messages

    return Steps(steps)
