"""FlowRunService handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from runwire.v1 import flow_run_pb2, history_pb2, state_pb2, watch_pb2
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import flow_run_service_pb2_grpc as pb_grpc
from runwire_server import clock, convert, validation, wire_scalars
from runwire_server.api.context import AppContext, update_paths
from runwire_server.api.watch_requests import runs_watch_options, watch_options
from runwire_server.convert.events import runs_watch_message, watch_message
from runwire_server.errors import InvalidArgument, ShuttingDown
from runwire_server.events.watch import Shutdown
from runwire_server.ids import parse_id, require_id, require_ids
from runwire_server.run_records import FlowRunRecord
from runwire_server.services import flow_runs
from runwire_server.services.states import pending

Context = grpc.aio.ServicerContext[Any, Any]


# Task runs one heartbeat may renew beside its flow run.
MAX_HEARTBEAT_TASKS = 1000


class FlowRunServicer(pb_grpc.FlowRunServiceServicer):
    def __init__(self, app: AppContext) -> None:
        self._app = app

    def _to_proto(self, run: FlowRunRecord) -> flow_run_pb2.FlowRun:
        return convert.flow_run_to_proto(run, clock.now())

    async def CreateFlowRun(
        self, request: pb.CreateFlowRunRequest, context: Context
    ) -> pb.CreateFlowRunResponse:
        msg = request.flow_run
        self._app.check_object(msg, "flow_run")
        values = flow_run_values(msg)
        initial = (
            self._app.proposal(msg.state, "flow_run.state") if msg.HasField("state") else pending
        )
        run, created = await self._app.services.flow_runs.create(values, initial)
        return pb.CreateFlowRunResponse(flow_run=self._to_proto(run), created=created)

    async def GetFlowRun(
        self, request: pb.GetFlowRunRequest, context: Context
    ) -> pb.GetFlowRunResponse:
        run_id = require_id(request.flow_run_id, "flow_run_id")
        run = await self._app.services.flow_runs.get(run_id)
        return pb.GetFlowRunResponse(flow_run=self._to_proto(run))

    async def ListFlowRuns(
        self, request: pb.ListFlowRunsRequest, context: Context
    ) -> pb.ListFlowRunsResponse:
        page = self._app.page(request, offset=request.offset)
        found, cursor = await self._app.services.flow_runs.list_page(
            request.filter, request.sort, page
        )
        return self._app.paged(
            found,
            self._to_proto,
            lambda items, token: pb.ListFlowRunsResponse(
                flow_runs=items, next_page_token=token, watch_cursor=cursor
            ),
        )

    async def CountFlowRuns(
        self, request: pb.CountFlowRunsRequest, context: Context
    ) -> pb.CountFlowRunsResponse:
        count = await self._app.services.flow_runs.count(request.filter)
        return pb.CountFlowRunsResponse(count=count)

    async def UpdateFlowRun(
        self, request: pb.UpdateFlowRunRequest, context: Context
    ) -> pb.UpdateFlowRunResponse:
        run_id = require_id(request.flow_run.id, "flow_run.id")
        changes = flow_run_changes(request)
        # Refused after the change, the update rolls back.
        run = await self._app.services.flow_runs.update(
            run_id,
            changes,
            check=lambda run: self._app.check_object(self._to_proto(run), "flow_run"),
        )
        return pb.UpdateFlowRunResponse(flow_run=self._to_proto(run))

    async def DeleteFlowRun(
        self, request: pb.DeleteFlowRunRequest, context: Context
    ) -> pb.DeleteFlowRunResponse:
        run_id = require_id(request.flow_run_id, "flow_run_id")
        await self._app.services.flow_runs.delete(run_id)
        return pb.DeleteFlowRunResponse()

    async def SetFlowRunState(
        self, request: pb.SetFlowRunStateRequest, context: Context
    ) -> pb.SetFlowRunStateResponse:
        run_id = require_id(request.flow_run_id, "flow_run_id")
        if not request.HasField("state"):
            raise InvalidArgument("state", "is required")
        proposal = self._app.proposal(request.state, "state")
        outcome = await self._app.services.flow_runs.set_state(
            run_id, proposal, force=request.force, lease_seconds=self._app.lease(request)
        )
        return pb.SetFlowRunStateResponse(result=self._app.orchestrated("flow_run", outcome))

    async def ResumeFlowRun(
        self, request: pb.ResumeFlowRunRequest, context: Context
    ) -> pb.ResumeFlowRunResponse:
        run_id = require_id(request.flow_run_id, "flow_run_id")
        run_input = (
            convert.struct_to_dict(request.run_input, "run_input")
            if request.HasField("run_input")
            else None
        )
        outcome = await self._app.services.flow_runs.resume(run_id, run_input)
        return pb.ResumeFlowRunResponse(result=self._app.orchestrated("flow_run", outcome))

    async def HeartbeatFlowRun(
        self, request: pb.HeartbeatFlowRunRequest, context: Context
    ) -> pb.HeartbeatFlowRunResponse:
        run_id = require_id(request.flow_run_id, "flow_run_id")
        seconds = self._app.lease(request)
        task_run_ids = require_ids(request.task_run_ids, "task_run_ids", most=MAX_HEARTBEAT_TASKS)
        lease = await self._app.services.leases.heartbeat_flow_run(run_id, seconds, task_run_ids)
        return pb.HeartbeatFlowRunResponse(
            **convert.lease_fields(lease),
            renewed_task_run_ids=[str(i) for i in lease.renewed_task_runs],
        )

    async def ListFlowRunStates(
        self, request: pb.ListFlowRunStatesRequest, context: Context
    ) -> pb.ListFlowRunStatesResponse:
        run_id = require_id(request.flow_run_id, "flow_run_id")
        page = self._app.page(request)
        return self._app.paged(
            await self._app.services.flow_runs.states(run_id, page),
            convert.state_to_proto,
            lambda items, token: pb.ListFlowRunStatesResponse(states=items, next_page_token=token),
        )

    async def GetFlowRunHistory(
        self, request: pb.GetFlowRunHistoryRequest, context: Context
    ) -> pb.GetFlowRunHistoryResponse:
        for name in ("history_start", "history_end", "history_interval"):
            if not request.HasField(name):
                raise InvalidArgument(name, "is required")
        start = wire_scalars.to_datetime(request.history_start, "history_start")
        end = wire_scalars.to_datetime(request.history_end, "history_end")
        step = wire_scalars.to_timedelta(request.history_interval, "history_interval")
        buckets = await self._app.services.history.flow_runs(start, end, step, request.filter)
        return pb.GetFlowRunHistoryResponse(
            intervals=[
                history_pb2.HistoryInterval(
                    interval_start=convert.timestamp(b.start),
                    interval_end=convert.timestamp(b.end),
                    states=[
                        history_pb2.HistoryStateCount(
                            state_type=state_pb2.StateType.Value(f"STATE_TYPE_{c.state_type}")
                            if c.state_type
                            else state_pb2.STATE_TYPE_UNSPECIFIED,
                            state_name=c.state_name,
                            count_runs=c.count_runs,
                            sum_estimated_run_time=convert.duration(c.sum_estimated_run_time),
                            sum_estimated_lateness=convert.duration(c.sum_estimated_lateness),
                        )
                        for c in b.states
                    ],
                )
                for b in buckets
            ]
        )

    async def GetFlowRunGraph(
        self, request: pb.GetFlowRunGraphRequest, context: Context
    ) -> pb.GetFlowRunGraphResponse:
        run_id = require_id(request.flow_run_id, "flow_run_id")
        runs = await self._app.services.task_runs.graph(run_id)
        at = clock.now()
        graph = pb.GetFlowRunGraphResponse(nodes=[convert.graph_node_to_proto(r, at) for r in runs])
        return self._app.whole(
            graph, "the graph", "list its task runs page by page with ListTaskRuns"
        )

    async def WatchFlowRun(  # type: ignore[override]  # may yield pre-serialized events
        self, request: watch_pb2.WatchFlowRunRequest, context: Context
    ) -> AsyncIterator[watch_pb2.WatchFlowRunResponse | bytes]:
        options = watch_options(request, self._app.settings)
        stream = self._app.services.watch.flow_run(options)
        async for item in self._follow(stream, context):
            yield watch_message(item)

    async def WatchFlowRuns(
        self, request: watch_pb2.WatchFlowRunsRequest, context: Context
    ) -> AsyncIterator[watch_pb2.WatchFlowRunsResponse]:
        options = runs_watch_options(request, self._app.settings)
        stream = self._app.services.watch.flow_runs(options)
        async for item in self._follow(stream, context):
            yield runs_watch_message(item)

    async def _follow(self, stream: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        """A watch stream, ending typed when the server stops."""
        try:
            async for message in stream:
                yield message
        except Shutdown:
            raise ShuttingDown("server shutting down; reconnect with the last cursor") from None


def flow_run_values(msg: flow_run_pb2.FlowRun) -> flow_runs.FlowRunValues:
    """Validate the client-settable fields of a FlowRun message for create."""
    values = flow_runs.FlowRunValues(flow_id=require_id(msg.flow_id, "flow_run.flow_id"))
    for name, value in _settable_fields(msg, "flow_run").items():
        setattr(values, name, value)
    values.idempotency_key = validation.text(msg.idempotency_key, "flow_run.idempotency_key")
    values.deployment_id = parse_id(msg.deployment_id, "flow_run.deployment_id", required=False)
    values.parent_task_run_id = parse_id(
        msg.parent_task_run_id, "flow_run.parent_task_run_id", required=False
    )
    if msg.HasField("created_by"):
        values.created_by_id = validation.text(msg.created_by.id, "flow_run.created_by.id")
        values.created_by_type = validation.text(msg.created_by.type, "flow_run.created_by.type")
        values.created_by_display_value = validation.text(
            msg.created_by.display_value, "flow_run.created_by.display_value"
        )
    return values


def _settable_fields(msg: flow_run_pb2.FlowRun, prefix: str) -> dict[str, Any]:
    """Every updatable field, validated and converted to its stored form."""
    return {
        "name": validation.text(msg.name, f"{prefix}.name"),
        "flow_version": validation.text(msg.flow_version, f"{prefix}.flow_version"),
        "parameters": convert.struct_to_dict(msg.parameters, f"{prefix}.parameters"),
        "context": convert.struct_to_dict(msg.context, f"{prefix}.context"),
        "run_config": convert.struct_to_dict(msg.run_config, f"{prefix}.run_config")
        if msg.HasField("run_config")
        else None,
        "tags": validation.tags(msg.tags, f"{prefix}.tags"),
        "labels": validation.labels(msg.labels, f"{prefix}.labels"),
        "empirical_policy": convert.flow_run_policy_from_proto(
            msg.empirical_policy, f"{prefix}.empirical_policy"
        ),
        "work_pool_name": validation.text(msg.work_pool_name, f"{prefix}.work_pool_name"),
        "work_queue_name": validation.text(msg.work_queue_name, f"{prefix}.work_queue_name"),
        "infrastructure_pid": validation.text(
            msg.infrastructure_pid, f"{prefix}.infrastructure_pid"
        ),
    }


def flow_run_changes(request: pb.UpdateFlowRunRequest) -> dict[str, Any]:
    msg = request.flow_run
    paths = update_paths(request.update_mask, msg, flow_runs.UPDATABLE, "flow_run")
    if "name" in paths and not msg.name:
        raise InvalidArgument("flow_run.name", "cannot be cleared")
    values = _settable_fields(msg, "flow_run")
    if "empirical_policy" in paths:
        # Server-maintained parts of the policy are not the client's to change.
        values["empirical_policy"] = {
            k: v for k, v in values["empirical_policy"].items() if k in flow_runs.CLIENT_POLICY_KEYS
        }
    return {path: values[path] for path in paths}
