"""FlowService and DeploymentService handlers."""

from __future__ import annotations

from typing import Any

import grpc

from runwire.v1 import deployment_pb2
from runwire.v1 import deployment_service_pb2 as dpb
from runwire.v1 import deployment_service_pb2_grpc as dgrpc
from runwire.v1 import flow_service_pb2 as pb
from runwire.v1 import flow_service_pb2_grpc as pb_grpc
from runwire_server import convert, validation
from runwire_server.api.context import AppContext
from runwire_server.errors import InvalidArgument
from runwire_server.ids import require_id
from runwire_server.orchestration.context import CollisionStrategy
from runwire_server.services import deployments, flows

Context = grpc.aio.ServicerContext[Any, Any]


class FlowServicer(pb_grpc.FlowServiceServicer):
    def __init__(self, app: AppContext) -> None:
        self._app = app

    async def CreateFlow(
        self, request: pb.CreateFlowRequest, context: Context
    ) -> pb.CreateFlowResponse:
        msg = request.flow
        self._app.check_object(msg, "flow")
        new = flows.NewFlow(
            name=validation.text(msg.name, "flow.name", required=True) or "",
            project_name=validation.text(msg.project_name, "flow.project_name"),
            storage_type=validation.text(msg.storage_type, "flow.storage_type"),
            tags=validation.tags(msg.tags, "flow.tags"),
            labels=validation.labels(msg.labels, "flow.labels"),
        )
        flow, created = await self._app.services.flows.create(new)
        return pb.CreateFlowResponse(flow=convert.flow_to_proto(flow), created=created)

    async def GetFlow(self, request: pb.GetFlowRequest, context: Context) -> pb.GetFlowResponse:
        flow_id = require_id(request.flow_id, "flow_id")
        flow = await self._app.services.flows.get(flow_id)
        return pb.GetFlowResponse(flow=convert.flow_to_proto(flow))

    async def GetFlowByName(
        self, request: pb.GetFlowByNameRequest, context: Context
    ) -> pb.GetFlowByNameResponse:
        name = validation.text(request.name, "name", required=True) or ""
        flow = await self._app.services.flows.get_by_name(name)
        return pb.GetFlowByNameResponse(flow=convert.flow_to_proto(flow))

    async def ListFlows(
        self, request: pb.ListFlowsRequest, context: Context
    ) -> pb.ListFlowsResponse:
        page = self._app.page(request, offset=request.offset)
        found = await self._app.services.flows.list_page(
            flows=request.flows,
            flow_runs=request.flow_runs,
            deployments=request.deployments,
            sort=request.sort,
            page=page,
        )
        return self._app.paged(
            found,
            convert.flow_to_proto,
            lambda items, token: pb.ListFlowsResponse(flows=items, next_page_token=token),
        )

    async def DeleteFlow(
        self, request: pb.DeleteFlowRequest, context: Context
    ) -> pb.DeleteFlowResponse:
        flow_id = require_id(request.flow_id, "flow_id")
        await self._app.services.flows.delete(flow_id)
        return pb.DeleteFlowResponse()


class DeploymentServicer(dgrpc.DeploymentServiceServicer):
    def __init__(self, app: AppContext) -> None:
        self._app = app

    async def CreateDeployment(
        self, request: dpb.CreateDeploymentRequest, context: Context
    ) -> dpb.CreateDeploymentResponse:
        msg = request.deployment
        self._app.check_object(msg, "deployment")
        new = deployments.NewDeployment(
            name=validation.text(msg.name, "deployment.name", required=True) or "",
            flow_id=require_id(msg.flow_id, "deployment.flow_id"),
            tags=validation.tags(msg.tags, "deployment.tags"),
            work_pool_name=validation.text(msg.work_pool_name, "deployment.work_pool_name"),
            work_queue_name=validation.text(msg.work_queue_name, "deployment.work_queue_name"),
            paused=msg.paused,
            concurrency_limit=_concurrency_limit(msg),
            collision_strategy=_collision_strategy(msg.collision_strategy),
        )
        deployment = await self._app.services.deployments.create(new)
        return dpb.CreateDeploymentResponse(deployment=convert.deployment_to_proto(deployment))

    async def GetDeployment(
        self, request: dpb.GetDeploymentRequest, context: Context
    ) -> dpb.GetDeploymentResponse:
        deployment_id = require_id(request.deployment_id, "deployment_id")
        deployment = await self._app.services.deployments.get(deployment_id)
        return dpb.GetDeploymentResponse(deployment=convert.deployment_to_proto(deployment))

    async def ListDeployments(
        self, request: dpb.ListDeploymentsRequest, context: Context
    ) -> dpb.ListDeploymentsResponse:
        page = self._app.page(request, offset=request.offset)
        found = await self._app.services.deployments.list_page(
            deployments=request.deployments, flows=request.flows, sort=request.sort, page=page
        )
        return self._app.paged(
            found,
            convert.deployment_to_proto,
            lambda items, token: dpb.ListDeploymentsResponse(
                deployments=items, next_page_token=token
            ),
        )

    async def DeleteDeployment(
        self, request: dpb.DeleteDeploymentRequest, context: Context
    ) -> dpb.DeleteDeploymentResponse:
        deployment_id = require_id(request.deployment_id, "deployment_id")
        await self._app.services.deployments.delete(deployment_id)
        return dpb.DeleteDeploymentResponse()


def _concurrency_limit(msg: deployment_pb2.Deployment) -> int | None:
    if not msg.HasField("concurrency_limit"):
        return None
    if msg.concurrency_limit < 0:
        raise InvalidArgument("deployment.concurrency_limit", "must not be negative")
    return msg.concurrency_limit


_STRATEGIES = {
    deployment_pb2.COLLISION_STRATEGY_UNSPECIFIED: CollisionStrategy.ENQUEUE,
    deployment_pb2.COLLISION_STRATEGY_ENQUEUE: CollisionStrategy.ENQUEUE,
    deployment_pb2.COLLISION_STRATEGY_CANCEL_NEW: CollisionStrategy.CANCEL_NEW,
}


def _collision_strategy(value: int) -> CollisionStrategy:
    try:
        return _STRATEGIES[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(
            "deployment.collision_strategy", f"{value} is not a known strategy"
        ) from None
