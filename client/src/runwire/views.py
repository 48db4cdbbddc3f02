"""View objects: immutable snapshots of a flow, a flow run and its task runs and logs.

They follow the reference's Prefect 1 views: only finished task runs are cached (finished data
cannot go stale), `get_latest()` returns a new view and carries those over, and `get_logs()`
defaults its end to the view's `updated_at`, so an old view does not show newer logs.

Views fetch with the client that made them, or the one given as `client=`; a view made by an
`AsyncClient` (whose calls cannot be made from a view's plain methods), or made without one,
uses the current client: the `Client` of the innermost `with Client(...) as client:` block.
With none, `NoClient` is raised: a view never opens a connection of its own. Times are
`pendulum.DateTime` values, in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pendulum
from google.protobuf import json_format

from runwire import filters
from runwire._values import FlowRunLog, FlowView, moment
from runwire.errors import NoClient
from runwire.states import State
from runwire.v1 import filters_pb2, flow_run_pb2, task_run_pb2, task_run_service_pb2

MAX_TASK_RUNS = 1000


class ViewClient(Protocol):
    """The calls views fetch with; `runwire.Client` makes them."""

    def get_flow(self, flow_id: str) -> FlowView: ...

    def get_flow_run(self, flow_run_id: str) -> FlowRunView: ...

    def get_task_run(self, task_run_id: str) -> TaskRunView: ...

    def get_task_run_by_slug(
        self, task_slug: str, flow_run_id: str, map_index: int = -1
    ) -> TaskRunView: ...

    def get_task_run_result(self, task_run_id: str) -> Any: ...

    def task_run_messages(self, flow_run_id: str) -> list[task_run_pb2.TaskRun]: ...

    def list_task_runs(
        self,
        criteria: task_run_service_pb2.TaskRunCriteria | None = None,
        *,
        sort: filters_pb2.TaskRunSort.ValueType = filters_pb2.TASK_RUN_SORT_ID_DESC,
        page_size: int = 200,
        limit: int | None = None,
    ) -> Iterator[TaskRunView]: ...

    def list_logs(
        self,
        flow_run_id: str,
        *,
        after: datetime | None = None,
        before: datetime | None = None,
        level_at_least: int | None = None,
    ) -> Iterator[FlowRunLog]: ...

    def watch_flow_run(
        self,
        flow_run_id: str,
        stream_states: bool = True,
        stream_logs: bool = True,
        max_duration: timedelta = ...,
    ) -> Iterator[FlowRunLog]: ...


_current: ContextVar[ViewClient | None] = ContextVar("runwire_current_client", default=None)


def enter_client(client: ViewClient) -> Token[ViewClient | None]:
    """Make `client` the current client (what `Client.__enter__` does)."""
    return _current.set(client)


def leave_client(token: Token[ViewClient | None]) -> None:
    _current.reset(token)


def current_client(given: ViewClient | None = None) -> ViewClient:
    """`given`, else the current client; NoClient when there is neither."""
    client = given if given is not None else _current.get()
    if client is None:
        raise NoClient(
            "no Runwire client to fetch with: pass client=Client(...), or work inside "
            "`with Client(...) as client:`"
        )
    return client


class _NotLoaded:
    def __repr__(self) -> str:
        return "NotLoaded"


NOT_LOADED: Any = _NotLoaded()


class _TaskRunMemo:
    """What a task run view loads once: the view's fields stay as they were made, while this
    holds what was fetched since (a finished task's result cannot change)."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: Any = NOT_LOADED


@dataclass(frozen=True, eq=False)
class TaskRunView:
    """A task run as it was when the view was made."""

    task_run_id: str
    task_slug: str
    name: str
    state: State
    map_index: int
    flow_run_id: str
    raw: task_run_pb2.TaskRun = field(repr=False)
    _client: ViewClient | None = field(default=None, repr=False)
    _memo: _TaskRunMemo = field(default_factory=_TaskRunMemo, repr=False)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TaskRunView)
            and other.task_run_id == self.task_run_id
            and other.state == self.state
        )

    def __hash__(self) -> int:
        return hash(self.task_run_id)

    @classmethod
    def from_proto(cls, client: ViewClient | None, message: task_run_pb2.TaskRun) -> TaskRunView:
        """The view of a TaskRun message; `client` is what it fetches more with."""
        return cls(
            task_run_id=message.id,
            task_slug=message.task_key,
            name=message.name,
            state=State.from_proto(message.state),
            map_index=message.map_index,
            flow_run_id=message.flow_run_id,
            raw=message,
            _client=client,
        )

    @classmethod
    def from_task_run_id(cls, task_run_id: str, *, client: ViewClient | None = None) -> TaskRunView:
        """The task run with this id, fetched now."""
        if not isinstance(task_run_id, str):
            raise TypeError(f"task_run_id must be a string, not {type(task_run_id).__name__}")
        return current_client(client).get_task_run(task_run_id)

    @classmethod
    def from_task_slug(
        cls,
        task_slug: str,
        flow_run_id: str,
        map_index: int = -1,
        *,
        client: ViewClient | None = None,
    ) -> TaskRunView:
        """The flow run's task run with this slug (and map index), fetched now."""
        return current_client(client).get_task_run_by_slug(task_slug, flow_run_id, map_index)

    def get_latest(self) -> TaskRunView:
        """A new view with fresh data; a result already loaded is carried over."""
        latest = TaskRunView.from_task_run_id(self.task_run_id, client=self._client)
        latest._memo.result = self._memo.result
        return latest

    def get_result(self) -> Any:
        """The task's return value, loaded once. A mapped parent gives its children's, in order."""
        if not self.state.is_finished():
            raise ValueError("The task result cannot be loaded if it is not finished.")
        if self._memo.result is NOT_LOADED:
            self._memo.result = current_client(self._client).get_task_run_result(self.task_run_id)
        return self._memo.result

    def iter_mapped(self) -> Iterator[TaskRunView]:
        """The mapped children in map order, read a page at a time."""
        children = iter(()) if self.map_index != -1 else self._children()
        first = next(children, None)
        if first is None:
            raise TypeError(
                f"Task run {self.task_run_id!r} ({self.task_slug}) is not a mapped task."
            )
        yield first
        yield from children

    def _children(self) -> Iterator[TaskRunView]:
        criteria = filters.task_runs(
            flow_run_ids=[self.flow_run_id], task_keys=[self.task_slug], map_index_at_least=0
        )
        return current_client(self._client).list_task_runs(
            criteria, sort=filters_pb2.TASK_RUN_SORT_MAP_INDEX_ASC
        )


class _FlowRunMemo:
    """What a flow run view fetches once: its flow, its finished task runs, and the ids of
    its task runs once the run has finished (a finished run gets no more task runs)."""

    __slots__ = ("flow", "slugs", "task_run_ids", "task_runs")

    def __init__(self) -> None:
        self.flow: FlowView | None = None
        self.task_runs: dict[str, TaskRunView] = {}
        self.slugs: dict[tuple[str, int], str] = {}
        self.task_run_ids: list[str] | None = None


@dataclass(frozen=True, eq=False)
class FlowRunView:
    """A flow run as it was when the view was made, with its states."""

    flow_run_id: str
    name: str
    flow_id: str
    labels: dict[str, str]
    tags: tuple[str, ...]
    parameters: dict[str, Any]
    context: dict[str, Any]
    state: State
    states: tuple[State, ...]
    updated_at: pendulum.DateTime
    run_config: dict[str, Any] | None
    raw: flow_run_pb2.FlowRun = field(repr=False)
    _client: ViewClient | None = field(default=None, repr=False)
    _memo: _FlowRunMemo = field(default_factory=_FlowRunMemo, repr=False)

    @classmethod
    def from_proto(
        cls,
        client: ViewClient | None,
        message: flow_run_pb2.FlowRun,
        states: tuple[State, ...] | None = None,
    ) -> FlowRunView:
        """The view of a FlowRun message (and its states, oldest first)."""
        return cls(
            flow_run_id=message.id,
            name=message.name,
            flow_id=message.flow_id,
            labels=dict(message.labels),
            tags=tuple(message.tags),
            parameters=json_format.MessageToDict(message.parameters),
            context=json_format.MessageToDict(message.context),
            state=State.from_proto(message.state),
            states=states if states is not None else (State.from_proto(message.state),),
            updated_at=moment(message.updated.ToDatetime(tzinfo=UTC)),
            run_config=json_format.MessageToDict(message.run_config)
            if message.HasField("run_config")
            else None,
            raw=message,
            _client=client,
        )

    @classmethod
    def from_flow_run_id(
        cls,
        flow_run_id: str,
        load_static_tasks: bool = False,
        *,
        client: ViewClient | None = None,
        _cached_task_runs: dict[str, TaskRunView] | None = None,
    ) -> FlowRunView:
        """The flow run with this id and its states, fetched now; `load_static_tasks` also
        fetches its finished unmapped task runs."""
        c = current_client(client)
        view = c.get_flow_run(flow_run_id)
        for task_run in (_cached_task_runs or {}).values():
            view._cache_if_finished(task_run)
        if load_static_tasks:
            for message in c.task_run_messages(flow_run_id):
                if message.map_index == -1 and message.id not in view._memo.task_runs:
                    view._cache_if_finished(TaskRunView.from_proto(view._client, message))
        return view

    @property
    def _cached_task_runs(self) -> dict[str, TaskRunView]:
        return self._memo.task_runs

    def get_latest(self, load_static_tasks: bool = False) -> FlowRunView:
        """A new view with fresh data; finished task runs already fetched are carried over."""
        return FlowRunView.from_flow_run_id(
            self.flow_run_id,
            load_static_tasks,
            client=self._client,
            _cached_task_runs=dict(self._memo.task_runs),
        )

    def get_flow_metadata(self, no_cache: bool = False) -> FlowView:
        """The run's flow, fetched once unless `no_cache`."""
        flow = self._memo.flow
        if flow is None or no_cache:
            flow = self._memo.flow = current_client(self._client).get_flow(self.flow_id)
        return flow

    def get_logs(
        self, start_time: datetime | None = None, end_time: datetime | None = None
    ) -> list[FlowRunLog]:
        """Logs after `start_time` (exclusive) up to `end_time` (inclusive), oldest first.

        As in the reference, `end_time` defaults to the view's `updated_at` (the run's last
        change when the view was made), so an old view never shows newer logs; pass
        `end_time=pendulum.now()` for everything written so far.
        """
        end = end_time or self.updated_at
        logs = current_client(self._client).list_logs(
            self.flow_run_id, after=start_time, before=end
        )
        return sorted(log for log in logs if start_time is None or log.timestamp > start_time)

    def get_task_run(
        self,
        task_slug: str | None = None,
        task_run_id: str | None = None,
        map_index: int | None = None,
    ) -> TaskRunView:
        """One of the run's task runs, by id or by slug (and map index); finished ones are
        fetched once."""
        if task_run_id is not None:
            task_run = self._memo.task_runs.get(task_run_id) or TaskRunView.from_task_run_id(
                task_run_id, client=self._client
            )
            if task_run.flow_run_id != self.flow_run_id:
                raise ValueError(
                    f"Task run {task_run_id!r} belongs to flow run {task_run.flow_run_id}, "
                    f"not to {self.flow_run_id}."
                )
            if task_slug is not None and task_run.task_slug != task_slug:
                raise ValueError(
                    "Both `task_slug` and `task_run_id` were provided but the task found using "
                    f"`task_run_id` has a different slug! {task_slug!r} != {task_run.task_slug!r}"
                )
            if map_index is not None and task_run.map_index != map_index:
                raise ValueError(
                    "Both `map_index` and `task_run_id` were provided but the task found using "
                    f"`task_run_id` has a different map index! {map_index} != {task_run.map_index}"
                )
            self._cache_if_finished(task_run)
            return task_run
        if task_slug is not None:
            index = -1 if map_index is None else map_index
            cached = self._memo.slugs.get((task_slug, index))
            if cached is not None:
                return self._memo.task_runs[cached]
            task_run = TaskRunView.from_task_slug(
                task_slug, self.flow_run_id, index, client=self._client
            )
            self._cache_if_finished(task_run)
            return task_run
        raise ValueError("One of `task_run_id` or `task_slug` must be provided!")

    def get_task_run_ids(self) -> list[str]:
        """The ids of the run's task runs, oldest first."""
        if self._memo.task_run_ids is not None:
            return list(self._memo.task_run_ids)
        messages = current_client(self._client).task_run_messages(self.flow_run_id)
        ids = [message.id for message in messages]
        if self.state.is_finished() and ids:
            self._memo.task_run_ids = ids
        return ids

    def get_all_task_runs(self) -> list[TaskRunView]:
        """Every task run of the flow run, in one listing; finished ones come from the cache."""
        messages = current_client(self._client).task_run_messages(self.flow_run_id)
        if len(messages) > MAX_TASK_RUNS:
            raise ValueError(
                f"Refusing to `get_all_task_runs` for a flow with more than {MAX_TASK_RUNS} "
                "tasks; get them by slug or id instead."
            )
        out: list[TaskRunView] = []
        for message in messages:
            cached = self._memo.task_runs.get(message.id)
            task_run = cached or TaskRunView.from_proto(self._client, message)
            self._cache_if_finished(task_run)
            out.append(task_run)
        return out

    def _cache_if_finished(self, task_run: TaskRunView) -> None:
        if task_run.state.is_finished():
            self._memo.task_runs[task_run.task_run_id] = task_run
            self._memo.slugs[(task_run.task_slug, task_run.map_index)] = task_run.task_run_id


__all__ = [
    "MAX_TASK_RUNS",
    "FlowRunLog",
    "FlowRunView",
    "FlowView",
    "TaskRunView",
    "ViewClient",
    "current_client",
]
