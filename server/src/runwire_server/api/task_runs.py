"""TaskRunService, LogService and ConcurrencyLimitService handlers."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc

from runwire.v1 import concurrency_limit_service_pb2 as cpb
from runwire.v1 import concurrency_limit_service_pb2_grpc as cgrpc
from runwire.v1 import (
    log_pb2,
    log_service_pb2,
    log_service_pb2_grpc,
    state_pb2,
    task_run_pb2,
    task_run_service_pb2_grpc,
)
from runwire.v1 import task_run_service_pb2 as pb
from runwire_server import clock, convert, validation, wire_scalars
from runwire_server.api.context import AppContext, update_paths
from runwire_server.errors import InvalidArgument, quote
from runwire_server.ids import require_id
from runwire_server.services import logs, task_reports, task_runs
from runwire_server.services.states import pending

Context = grpc.aio.ServicerContext[Any, Any]

# A report call's size: enough for a reporter's batch, few enough to keep a transaction short.
MAX_REPORTS = 1000
MAX_REPORTED_STATES = 10


class TaskRunServicer(task_run_service_pb2_grpc.TaskRunServiceServicer):
    """Create, read, list, orchestrate and delete task runs, and read their results."""

    def __init__(self, app: AppContext) -> None:
        self._app = app

    async def CreateTaskRun(
        self, request: pb.CreateTaskRunRequest, context: Context
    ) -> pb.CreateTaskRunResponse:
        msg = request.task_run
        self._app.check_object(msg, "task_run")
        values = task_run_values(msg)
        initial = (
            self._app.proposal(msg.state, "task_run.state") if msg.HasField("state") else pending
        )
        run, created = await self._app.services.task_runs.create(values, initial)
        return pb.CreateTaskRunResponse(
            task_run=convert.task_run_to_proto(run, clock.now()), created=created
        )

    async def GetTaskRun(
        self, request: pb.GetTaskRunRequest, context: Context
    ) -> pb.GetTaskRunResponse:
        run_id = require_id(request.task_run_id, "task_run_id")
        run = await self._app.services.task_runs.get(run_id)
        return pb.GetTaskRunResponse(task_run=convert.task_run_to_proto(run, clock.now()))

    async def SetTaskRunState(
        self, request: pb.SetTaskRunStateRequest, context: Context
    ) -> pb.SetTaskRunStateResponse:
        run_id = require_id(request.task_run_id, "task_run_id")
        if not request.HasField("state"):
            raise InvalidArgument("state", "is required")
        proposed = self._app.proposal(request.state, "state")
        outcome = await self._app.services.task_runs.set_state(
            run_id, proposed, force=request.force, lease_seconds=self._app.lease(request)
        )
        return pb.SetTaskRunStateResponse(result=self._app.orchestrated("task_run", outcome))

    async def ReportTaskRuns(
        self, request: pb.ReportTaskRunsRequest, context: Context
    ) -> pb.ReportTaskRunsResponse:
        if len(request.reports) > MAX_REPORTS:
            raise InvalidArgument(
                "reports", f"has {len(request.reports)} reports; at most {MAX_REPORTS} are taken"
            )
        reports = [
            self._report(report, f"reports[{i}]") for i, report in enumerate(request.reports)
        ]
        results = await self._app.services.task_reports.report(reports)
        decisions: Counter[str] = Counter()
        for done in results:
            decisions["ACCEPT"] += done.accepted
            if done.outcome.status.name != "ACCEPT":
                decisions[done.outcome.status.name] += 1
        self._app.count_transitions("task_run", decisions)
        return pb.ReportTaskRunsResponse(
            results=[
                pb.TaskRunReportResult(
                    task_run_id=str(done.task_run_id),
                    created=done.created,
                    accepted_count=done.accepted,
                    result=convert.outcome_to_proto(done.outcome),
                )
                for done in results
            ]
        )

    def _report(self, report: pb.TaskRunReport, field: str) -> task_reports.TaskRunReport:
        msg = report.task_run
        self._app.check_object(msg, f"{field}.task_run")
        if len(report.states) > MAX_REPORTED_STATES:
            raise InvalidArgument(
                f"{field}.states",
                f"has {len(report.states)} states; at most {MAX_REPORTED_STATES} are taken",
            )
        states = [
            task_reports.ReportedState(
                self._app.proposal(state, f"{field}.states[{i}]"),
                _reported_time(state, f"{field}.states[{i}].timestamp"),
            )
            for i, state in enumerate(report.states)
        ]
        return task_reports.TaskRunReport(
            task_run_id=require_id(msg.id, f"{field}.task_run.id"),
            values=task_run_values(msg, f"{field}.task_run"),
            states=states,
            lease_seconds=self._app.lease(report, path=field),
        )

    async def HeartbeatTaskRun(
        self, request: pb.HeartbeatTaskRunRequest, context: Context
    ) -> pb.HeartbeatTaskRunResponse:
        run_id = require_id(request.task_run_id, "task_run_id")
        seconds = self._app.lease(request)
        lease = await self._app.services.leases.heartbeat_task_run(run_id, seconds)
        return pb.HeartbeatTaskRunResponse(**convert.lease_fields(lease))

    async def UpdateTaskRun(
        self, request: pb.UpdateTaskRunRequest, context: Context
    ) -> pb.UpdateTaskRunResponse:
        run_id = require_id(request.task_run.id, "task_run.id")
        run = await self._app.services.task_runs.update(run_id, task_run_changes(request))
        return pb.UpdateTaskRunResponse(task_run=convert.task_run_to_proto(run, clock.now()))

    async def GetTaskRunBySlug(
        self, request: pb.GetTaskRunBySlugRequest, context: Context
    ) -> pb.GetTaskRunBySlugResponse:
        flow_run_id = require_id(request.flow_run_id, "flow_run_id")
        slug = validation.text(request.task_slug, "task_slug", required=True) or ""
        map_index = request.map_index if request.HasField("map_index") else -1
        if map_index < -1:
            raise InvalidArgument("map_index", "must be -1 (not mapped) or an index >= 0")
        run = await self._app.services.task_runs.get_by_slug(flow_run_id, slug, map_index)
        return pb.GetTaskRunBySlugResponse(task_run=convert.task_run_to_proto(run, clock.now()))

    async def ListTaskRuns(
        self, request: pb.ListTaskRunsRequest, context: Context
    ) -> pb.ListTaskRunsResponse:
        page = self._app.page(request, offset=request.offset)
        found = await self._app.services.task_runs.list_page(request.filter, request.sort, page)
        at = clock.now()
        return self._app.paged(
            found,
            lambda run: convert.task_run_to_proto(run, at),
            lambda items, token: pb.ListTaskRunsResponse(task_runs=items, next_page_token=token),
        )

    async def CountTaskRuns(
        self, request: pb.CountTaskRunsRequest, context: Context
    ) -> pb.CountTaskRunsResponse:
        count = await self._app.services.task_runs.count(request.filter)
        return pb.CountTaskRunsResponse(count=count)

    async def DeleteTaskRun(
        self, request: pb.DeleteTaskRunRequest, context: Context
    ) -> pb.DeleteTaskRunResponse:
        run_id = require_id(request.task_run_id, "task_run_id")
        await self._app.services.task_runs.delete(run_id)
        return pb.DeleteTaskRunResponse()

    async def GetTaskRunResult(
        self, request: pb.GetTaskRunResultRequest, context: Context
    ) -> pb.GetTaskRunResultResponse:
        run_id = require_id(request.task_run_id, "task_run_id")
        own, children = await self._app.services.task_runs.result(run_id)
        results = pb.GetTaskRunResultResponse(
            result=convert.result_to_proto(own),
            child_results=[convert.result_reference(c) for c in children],
        )
        return self._app.whole(
            results,
            "the mapped task's results",
            "read the children's results one by one (GetTaskRunResult on each child task run)",
        )

    async def ListTaskRunStates(
        self, request: pb.ListTaskRunStatesRequest, context: Context
    ) -> pb.ListTaskRunStatesResponse:
        run_id = require_id(request.task_run_id, "task_run_id")
        page = self._app.page(request)
        return self._app.paged(
            await self._app.services.task_runs.states(run_id, page),
            convert.state_to_proto,
            lambda items, token: pb.ListTaskRunStatesResponse(states=items, next_page_token=token),
        )


# A reported time before this is a reporter's mistake, not a task that ran then.
_EARLIEST_REPORTED = datetime(2000, 1, 1, tzinfo=UTC)


def _reported_time(state: state_pb2.State, field: str) -> datetime | None:
    if not state.HasField("timestamp"):
        return None
    at = wire_scalars.to_datetime(state.timestamp, field)
    if at < _EARLIEST_REPORTED:
        raise InvalidArgument(field, "must be in the year 2000 or later (when the state happened)")
    return at


def task_run_values(msg: task_run_pb2.TaskRun, field: str = "task_run") -> task_runs.TaskRunValues:
    from google.protobuf import json_format

    map_index = msg.map_index if msg.HasField("map_index") else -1
    if map_index < -1:
        raise InvalidArgument(f"{field}.map_index", "must be -1 (not mapped) or an index >= 0")
    inputs: dict[str, list[dict[str, Any]]] = {}
    for name, values in msg.task_inputs.items():
        for index, source in enumerate(values.inputs):
            if source.input_type == task_run_pb2.TaskInput.INPUT_TYPE_TASK_RUN:
                require_id(
                    source.task_run_id, f"{field}.task_inputs[{quote(name)}][{index}].task_run_id"
                )
        inputs[name] = [json_format.MessageToDict(i) for i in values.inputs]
    return task_runs.TaskRunValues(
        flow_run_id=require_id(msg.flow_run_id, f"{field}.flow_run_id"),
        task_key=validation.text(msg.task_key, f"{field}.task_key", required=True) or "",
        name=validation.text(msg.name, f"{field}.name"),
        dynamic_key=validation.text(msg.dynamic_key, f"{field}.dynamic_key") or "",
        map_index=map_index,
        tags=validation.tags(msg.tags, f"{field}.tags"),
        cache_key=validation.text(msg.cache_key, f"{field}.cache_key", max_length=10_000),
        cache_expiration=(
            wire_scalars.to_datetime(msg.cache_expiration, f"{field}.cache_expiration")
            if msg.HasField("cache_expiration")
            else None
        ),
        task_version=validation.text(msg.task_version, f"{field}.task_version"),
        empirical_policy=convert.task_run_policy_from_proto(
            msg.empirical_policy, f"{field}.empirical_policy"
        ),
        task_inputs=inputs,
    )


def task_run_changes(request: pb.UpdateTaskRunRequest) -> dict[str, Any]:
    msg = request.task_run
    paths = update_paths(request.update_mask, msg, task_runs.UPDATABLE, "task_run")
    changes: dict[str, Any] = {}
    if "name" in paths:
        changes["name"] = validation.text(msg.name, "task_run.name", required=True)
    if "tags" in paths:
        changes["tags"] = validation.tags(msg.tags, "task_run.tags")
    return changes


class ConcurrencyLimitServicer(cgrpc.ConcurrencyLimitServiceServicer):
    def __init__(self, app: AppContext) -> None:
        self._app = app

    async def CreateConcurrencyLimit(
        self, request: cpb.CreateConcurrencyLimitRequest, context: Context
    ) -> cpb.CreateConcurrencyLimitResponse:
        tag = validation.text(request.tag, "tag", required=True) or ""
        if request.concurrency_limit < 0:
            raise InvalidArgument("concurrency_limit", "must not be negative")
        found, created = await self._app.services.concurrency_limits.upsert(
            tag, request.concurrency_limit
        )
        return cpb.CreateConcurrencyLimitResponse(
            concurrency_limit=convert.concurrency_limit_to_proto(found), created=created
        )

    async def GetConcurrencyLimit(
        self, request: cpb.GetConcurrencyLimitRequest, context: Context
    ) -> cpb.GetConcurrencyLimitResponse:
        tag = validation.text(request.tag, "tag", required=True) or ""
        found = await self._app.services.concurrency_limits.get(tag)
        return cpb.GetConcurrencyLimitResponse(
            concurrency_limit=convert.concurrency_limit_to_proto(found)
        )

    async def ListConcurrencyLimits(
        self, request: cpb.ListConcurrencyLimitsRequest, context: Context
    ) -> cpb.ListConcurrencyLimitsResponse:
        page = self._app.page(request)
        return self._app.paged(
            await self._app.services.concurrency_limits.list_page(page),
            convert.concurrency_limit_to_proto,
            lambda items, token: cpb.ListConcurrencyLimitsResponse(
                concurrency_limits=items, next_page_token=token
            ),
        )

    async def DeleteConcurrencyLimit(
        self, request: cpb.DeleteConcurrencyLimitRequest, context: Context
    ) -> cpb.DeleteConcurrencyLimitResponse:
        tag = validation.text(request.tag, "tag", required=True) or ""
        await self._app.services.concurrency_limits.delete(tag)
        return cpb.DeleteConcurrencyLimitResponse()


class LogServicer(log_service_pb2_grpc.LogServiceServicer):
    def __init__(self, app: AppContext) -> None:
        self._app = app

    async def CreateLogs(
        self, request: log_service_pb2.CreateLogsRequest, context: Context
    ) -> log_service_pb2.CreateLogsResponse:
        settings = self._app.settings
        if len(request.logs) > settings.max_logs_per_request:
            raise InvalidArgument(
                "logs",
                f"has {len(request.logs)} entries; "
                f"at most {settings.max_logs_per_request} are taken per call",
            )
        batch = log_batch(request.logs, settings.max_log_message_bytes)
        created = await self._app.services.logs.create(batch)
        return log_service_pb2.CreateLogsResponse(created_count=created)

    async def ListLogs(
        self, request: log_service_pb2.ListLogsRequest, context: Context
    ) -> log_service_pb2.ListLogsResponse:
        page = self._app.page(request, offset=request.offset)
        return self._app.paged(
            await self._app.services.logs.list_page(request.filter, request.sort, page),
            convert.log_to_proto,
            lambda items, token: log_service_pb2.ListLogsResponse(
                logs=items, next_page_token=token
            ),
        )


def log_batch(lines: Sequence[log_pb2.Log], max_message_bytes: int) -> list[logs.NewLog]:
    """A batch's lines, checked; each refusal names its line. The lines of a batch mostly name
    the same runs, so each id's text is parsed once a batch."""
    ids: dict[str, uuid.UUID] = {}
    out = []
    for index, msg in enumerate(lines):
        if not 0 <= msg.level <= 100:
            raise InvalidArgument(
                f"logs[{index}].level", "must be a logging level between 0 and 100"
            )
        message = msg.message
        if len(message) * 4 > max_message_bytes and len(message.encode()) > max_message_bytes:
            raise InvalidArgument(
                f"logs[{index}].message", f"must be at most {max_message_bytes} bytes"
            )
        if "\x00" in message:
            raise InvalidArgument(f"logs[{index}].message", "must not contain NUL characters")
        flow_run_id = ids.get(msg.flow_run_id) or require_id(
            msg.flow_run_id, f"logs[{index}].flow_run_id"
        )
        ids[msg.flow_run_id] = flow_run_id
        task_run_id = None
        if msg.task_run_id:
            task_run_id = ids.get(msg.task_run_id) or require_id(
                msg.task_run_id, f"logs[{index}].task_run_id"
            )
            ids[msg.task_run_id] = task_run_id
        out.append(
            logs.NewLog(
                flow_run_id=flow_run_id,
                task_run_id=task_run_id,
                name=validation.text(msg.name, f"logs[{index}].name") or "",
                level=msg.level,
                message=message,
                timestamp=(
                    wire_scalars.to_datetime(msg.timestamp, f"logs[{index}].timestamp")
                    if msg.HasField("timestamp")
                    else clock.now()
                ),
            )
        )
    return out
