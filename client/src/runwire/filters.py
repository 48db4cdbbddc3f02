"""A pythonic way to build the filter messages lists and watches take: `flow_runs(...)` for
flow runs (lists, counts, history and watches), `task_runs(...)` for task runs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from runwire.states import StateType
from runwire.v1 import filters_pb2 as f
from runwire.v1 import task_run_service_pb2


def _strings(values: Iterable[str]) -> f.StringList:
    return f.StringList(values=list(values))


def flow_runs(
    *,
    ids: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    name_like: str | None = None,
    states: Iterable[StateType | str] | None = None,
    state_names: Iterable[str] | None = None,
    tags_all: Iterable[str] | None = None,
    tags_any: Iterable[str] | None = None,
    flow_ids: Iterable[str] | None = None,
    flow_name: str | None = None,
    deployment_ids: Iterable[str] | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
) -> f.FlowRunCriteria:
    """Criteria for ListFlowRuns, CountFlowRuns and WatchFlowRuns; every argument given must
    hold. An empty list given matches nothing (not everything)."""
    runs = f.FlowRunFilter()
    if ids is not None:
        runs.id.any_of.CopyFrom(_strings(ids))
    if names is not None:
        runs.name.any_of.CopyFrom(_strings(names))
    if name_like:
        runs.name.like = name_like
    if states is not None:
        types = [StateType(str(s).upper()).to_proto() for s in states]
        runs.state.type.any_of.CopyFrom(f.StateTypeList(values=types))
    if state_names is not None:
        runs.state.name.any_of.CopyFrom(_strings(state_names))
    if tags_all is not None:
        runs.tags.all_of.CopyFrom(_strings(tags_all))
    if tags_any is not None:
        runs.tags.any_of.CopyFrom(_strings(tags_any))
    if flow_ids is not None:
        runs.flow_id.any_of.CopyFrom(_strings(flow_ids))
    if deployment_ids is not None:
        runs.deployment_id.any_of.CopyFrom(_strings(deployment_ids))
    for bound, target in ((started_after, "after"), (started_before, "before")):
        if bound is not None:
            moment = bound if bound.tzinfo else bound.replace(tzinfo=UTC)
            getattr(runs.start_time, target).FromDatetime(moment)
    criteria = f.FlowRunCriteria(flow_runs=runs)
    if flow_name is not None:
        criteria.flows.name.any_of.CopyFrom(_strings([flow_name]))
    return criteria


def task_runs(
    *,
    flow_run_ids: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    task_keys: Iterable[str] | None = None,
    states: Iterable[StateType | str] | None = None,
    tags_all: Iterable[str] | None = None,
    map_index_at_least: int | None = None,
) -> task_run_service_pb2.TaskRunCriteria:
    """Criteria for ListTaskRuns; every argument given must hold. `map_index_at_least=0`
    keeps a mapped task's children."""
    runs = f.TaskRunFilter()
    if flow_run_ids is not None:
        runs.flow_run_id.any_of.CopyFrom(_strings(flow_run_ids))
    if names is not None:
        runs.name.any_of.CopyFrom(_strings(names))
    if task_keys is not None:
        runs.task_key.any_of.CopyFrom(_strings(task_keys))
    if states is not None:
        types = [StateType(str(s).upper()).to_proto() for s in states]
        runs.state.type.any_of.CopyFrom(f.StateTypeList(values=types))
    if tags_all is not None:
        runs.tags.all_of.CopyFrom(_strings(tags_all))
    if map_index_at_least is not None:
        runs.map_index.ge = map_index_at_least
    return task_run_service_pb2.TaskRunCriteria(task_runs=runs)
