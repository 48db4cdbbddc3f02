"""View objects: immutable snapshots of a flow, a flow run and its task runs and logs.

They follow the reference's Prefect 1 views: only finished task runs are cached (finished data
cannot go stale), `get_latest()` returns a new view and carries those over, and `get_logs()`
defaults its end to the view's `updated_at`, so an old view does not show newer logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from google.protobuf import json_format

from runwire.errors import NotFound
from runwire.states import State
from runwire.v1 import flow_pb2, flow_run_pb2, log_pb2, task_run_pb2, task_run_service_pb2

if TYPE_CHECKING:
    from runwire.client import Client

MAX_TASK_RUNS = 1000


def _client(client: Client | None) -> Client:
    if client is not None:
        return client
    from runwire.client import Client

    return Client()


class FlowRunLog(NamedTuple):
    """One log line (or a state change rendered as one); sorts by time, then level."""

    timestamp: datetime
    level: int
    message: str
    name: str = ""
    task_run_id: str = ""

    @classmethod
    def from_proto(cls, message: log_pb2.Log) -> FlowRunLog:
        return cls(
            timestamp=message.timestamp.ToDatetime(tzinfo=UTC),
            level=message.level,
            message=message.message,
            name=message.name,
            task_run_id=message.task_run_id,
        )

    @property
    def level_name(self) -> str:
        return logging.getLevelName(self.level)


@dataclass(frozen=True)
class FlowView:
    flow_id: str
    name: str
    project_name: str
    storage_type: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    created: datetime
    updated: datetime

    @classmethod
    def from_proto(cls, message: flow_pb2.Flow) -> FlowView:
        return cls(
            flow_id=message.id,
            name=message.name,
            project_name=message.project_name,
            storage_type=message.storage_type,
            tags=tuple(message.tags),
            labels=dict(message.labels),
            created=message.created.ToDatetime(tzinfo=UTC),
            updated=message.updated.ToDatetime(tzinfo=UTC),
        )


class _NotLoaded:
    def __repr__(self) -> str:
        return "NotLoaded"


NOT_LOADED: Any = _NotLoaded()


@dataclass(frozen=True, eq=False)
class TaskRunView:
    task_run_id: str
    task_slug: str
    name: str
    state: State
    map_index: int
    flow_run_id: str
    _client: Client = field(repr=False)
    _result: list[Any] = field(default_factory=lambda: [NOT_LOADED], repr=False)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TaskRunView)
            and other.task_run_id == self.task_run_id
            and other.state == self.state
        )

    def __hash__(self) -> int:
        return hash(self.task_run_id)

    @classmethod
    def from_proto(cls, client: Client, message: task_run_pb2.TaskRun) -> TaskRunView:
        return cls(
            task_run_id=message.id,
            task_slug=message.task_key,
            name=message.name,
            state=State.from_proto(message.state),
            map_index=message.map_index,
            flow_run_id=message.flow_run_id,
            _client=client,
        )

    @classmethod
    def from_task_run_id(cls, task_run_id: str, *, client: Client | None = None) -> TaskRunView:
        if not isinstance(task_run_id, str):
            raise TypeError(f"task_run_id must be a string, not {type(task_run_id).__name__}")
        c = _client(client)
        response = c.call(
            c.task_runs.GetTaskRun, task_run_service_pb2.GetTaskRunRequest(task_run_id=task_run_id)
        )
        return cls.from_proto(c, response.task_run)

    @classmethod
    def from_task_slug(
        cls,
        task_slug: str,
        flow_run_id: str,
        map_index: int = -1,
        *,
        client: Client | None = None,
    ) -> TaskRunView:
        c = _client(client)
        response = c.call(
            c.task_runs.GetTaskRunBySlug,
            task_run_service_pb2.GetTaskRunBySlugRequest(
                flow_run_id=flow_run_id, task_slug=task_slug, map_index=map_index
            ),
        )
        return cls.from_proto(c, response.task_run)

    def get_latest(self) -> TaskRunView:
        """A new view with fresh data; a result already loaded is carried over."""
        latest = TaskRunView.from_task_run_id(self.task_run_id, client=self._client)
        latest._result[0] = self._result[0]
        return latest

    def get_result(self) -> Any:
        """The task's return value, loaded once. A mapped parent gives its children's, in order."""
        if not self.state.is_finished():
            raise ValueError("The task result cannot be loaded if it is not finished.")
        if self._result[0] is NOT_LOADED:
            from runwire.states import Result

            c = self._client
            response = c.call(
                c.task_runs.GetTaskRunResult,
                task_run_service_pb2.GetTaskRunResultRequest(task_run_id=self.task_run_id),
            )
            if response.child_results:
                value: Any = [Result.from_proto(r).load() for r in response.child_results]
            else:
                value = Result.from_proto(response.result).load()
            self._result[0] = value
        return self._result[0]

    def iter_mapped(self) -> Iterator[TaskRunView]:
        """The mapped children, one lookup at a time, in map order."""
        if self.map_index != -1 or not self._has_child(0):
            raise TypeError(
                f"Task run {self.task_run_id!r} ({self.task_slug}) is not a mapped task."
            )
        index = 0
        while True:
            try:
                yield TaskRunView.from_task_slug(
                    self.task_slug, self.flow_run_id, index, client=self._client
                )
            except NotFound:
                return
            index += 1

    def _has_child(self, index: int) -> bool:
        try:
            TaskRunView.from_task_slug(self.task_slug, self.flow_run_id, index, client=self._client)
        except NotFound:
            return False
        return True


@dataclass(frozen=True, eq=False)
class FlowRunView:
    flow_run_id: str
    name: str
    flow_id: str
    labels: dict[str, str]
    tags: tuple[str, ...]
    parameters: dict[str, Any]
    context: dict[str, Any]
    state: State
    states: tuple[State, ...]
    updated_at: datetime
    run_config: dict[str, Any] | None
    raw: flow_run_pb2.FlowRun = field(repr=False)
    _client: Client = field(repr=False)
    _cached_task_runs: dict[str, TaskRunView] = field(default_factory=dict, repr=False)
    _slug_index: dict[tuple[str, int], str] = field(default_factory=dict, repr=False)
    _flow: list[FlowView | None] = field(default_factory=lambda: [None], repr=False)
    _task_run_ids: list[list[str] | None] = field(default_factory=lambda: [None], repr=False)

    @classmethod
    def from_proto(
        cls,
        client: Client,
        message: flow_run_pb2.FlowRun,
        states: tuple[State, ...] | None = None,
    ) -> FlowRunView:
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
            updated_at=message.updated.ToDatetime(tzinfo=UTC),
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
        client: Client | None = None,
        _cached_task_runs: dict[str, TaskRunView] | None = None,
    ) -> FlowRunView:
        from runwire.v1 import flow_run_service_pb2

        c = _client(client)
        response = c.call(
            c.flow_runs.GetFlowRun, flow_run_service_pb2.GetFlowRunRequest(flow_run_id=flow_run_id)
        )
        states = tuple(sorted(c.list_flow_run_states(flow_run_id), key=lambda s: s.timestamp))
        view = cls.from_proto(c, response.flow_run, states)
        for task_run in (_cached_task_runs or {}).values():
            view._cache_if_finished(task_run)
        if load_static_tasks:
            for message in c.task_run_messages(flow_run_id):
                if message.map_index == -1 and message.id not in view._cached_task_runs:
                    view._cache_if_finished(TaskRunView.from_proto(c, message))
        return view

    def get_latest(self, load_static_tasks: bool = False) -> FlowRunView:
        """A new view with fresh data; finished task runs already fetched are carried over."""
        return FlowRunView.from_flow_run_id(
            self.flow_run_id,
            load_static_tasks,
            client=self._client,
            _cached_task_runs=dict(self._cached_task_runs),
        )

    def get_flow_metadata(self, no_cache: bool = False) -> FlowView:
        flow = self._flow[0]
        if flow is None or no_cache:
            flow = self._flow[0] = self._client.get_flow(self.flow_id)
        return flow

    def get_logs(
        self, start_time: datetime | None = None, end_time: datetime | None = None
    ) -> list[FlowRunLog]:
        """Logs after `start_time` (exclusive) up to `end_time` (inclusive), oldest first.

        As in the reference, `end_time` defaults to the view's `updated_at` (the run's last
        change when the view was made), so an old view never shows newer logs; pass
        `end_time=datetime.now(UTC)` for everything written so far.
        """
        end = end_time or self.updated_at
        logs = self._client.list_logs(self.flow_run_id, after=start_time, before=end)
        return sorted(log for log in logs if start_time is None or log.timestamp > start_time)

    def get_task_run(
        self,
        task_slug: str | None = None,
        task_run_id: str | None = None,
        map_index: int | None = None,
    ) -> TaskRunView:
        if task_run_id is not None:
            task_run = self._cached_task_runs.get(task_run_id) or TaskRunView.from_task_run_id(
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
            cached = self._slug_index.get((task_slug, index))
            if cached is not None:
                return self._cached_task_runs[cached]
            task_run = TaskRunView.from_task_slug(
                task_slug, self.flow_run_id, index, client=self._client
            )
            self._cache_if_finished(task_run)
            return task_run
        raise ValueError("One of `task_run_id` or `task_slug` must be provided!")

    def get_task_run_ids(self) -> list[str]:
        if self._task_run_ids[0] is not None:
            return list(self._task_run_ids[0])
        ids = [message.id for message in self._client.task_run_messages(self.flow_run_id)]
        if self.state.is_finished() and ids:
            self._task_run_ids[0] = ids  # a finished run gets no more task runs
        return ids

    def get_all_task_runs(self) -> list[TaskRunView]:
        """Every task run of the flow run, in one listing; finished ones come from the cache."""
        messages = self._client.task_run_messages(self.flow_run_id)
        if len(messages) > MAX_TASK_RUNS:
            raise ValueError(
                f"Refusing to `get_all_task_runs` for a flow with more than {MAX_TASK_RUNS} "
                "tasks; get them by slug or id instead."
            )
        out: list[TaskRunView] = []
        for message in messages:
            cached = self._cached_task_runs.get(message.id)
            task_run = cached or TaskRunView.from_proto(self._client, message)
            self._cache_if_finished(task_run)
            out.append(task_run)
        return out

    def _cache_if_finished(self, task_run: TaskRunView) -> None:
        if task_run.state.is_finished():
            self._cached_task_runs[task_run.task_run_id] = task_run
            self._slug_index[(task_run.task_slug, task_run.map_index)] = task_run.task_run_id
