"""Flows and deployments: the plans of their calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runwire._plans import Paged, Rpc, Unary
from runwire._values import Deployment, FlowView
from runwire.v1 import deployment_pb2, deployment_service_pb2, flow_pb2, flow_service_pb2

FLOWS = "flows"
DEPLOYMENTS = "deployments"


def create_flow(
    name: str, *, tags: Sequence[str] = (), labels: Mapping[str, str] | None = None
) -> Unary[FlowView]:
    """Create the flow of this name, or get it if it exists: then `tags` it lacks are added
    to it (it keeps those it has) and the flow comes back with all its tags; `labels` apply
    only to a flow this call creates."""
    flow = flow_pb2.Flow(name=name, tags=list(tags), labels=dict(labels or {}))
    return Unary(
        Rpc(FLOWS, "CreateFlow"),
        flow_service_pb2.CreateFlowRequest(flow=flow),
        lambda response, _: FlowView.from_proto(response.flow),
    )


def get_flow(flow_id: str) -> Unary[FlowView]:
    """The flow with this id."""
    return Unary(
        Rpc(FLOWS, "GetFlow"),
        flow_service_pb2.GetFlowRequest(flow_id=flow_id),
        lambda response, _: FlowView.from_proto(response.flow),
    )


def get_flow_by_name(name: str) -> Unary[FlowView]:
    """The flow with this name."""
    return Unary(
        Rpc(FLOWS, "GetFlowByName"),
        flow_service_pb2.GetFlowByNameRequest(name=name),
        lambda response, _: FlowView.from_proto(response.flow),
    )


def list_flows(*, ids: Sequence[str] | None = None, page_size: int = 200) -> Paged[FlowView]:
    """Every flow (or those with these `ids`), by name; pages of `page_size` are fetched as
    the caller goes."""
    request = flow_service_pb2.ListFlowsRequest(page_size=page_size)
    if ids is not None:
        request.flows.id.any_of.values.extend(ids)
    return Paged(
        Rpc(FLOWS, "ListFlows"),
        request,
        "flows",
        lambda flow, _: FlowView.from_proto(flow),
    )


def delete_flow(flow_id: str) -> Unary[None]:
    """Delete the flow with this id."""
    return Unary(
        Rpc(FLOWS, "DeleteFlow"),
        flow_service_pb2.DeleteFlowRequest(flow_id=flow_id),
        lambda response, _: None,
    )


def create_deployment(
    flow_id: str,
    name: str,
    *,
    tags: Sequence[str] = (),
    work_pool_name: str = "",
    work_queue_name: str = "",
    concurrency_limit: int | None = None,
    cancel_new_when_full: bool = False,
) -> Unary[Deployment]:
    """Create a deployment of a flow; `concurrency_limit` caps its runs running at once, and
    `cancel_new_when_full` cancels a run that would exceed it instead of queueing it."""
    deployment = deployment_pb2.Deployment(
        flow_id=flow_id,
        name=name,
        tags=list(tags),
        work_pool_name=work_pool_name,
        work_queue_name=work_queue_name,
        concurrency_limit=concurrency_limit,
        collision_strategy=deployment_pb2.COLLISION_STRATEGY_CANCEL_NEW
        if cancel_new_when_full
        else deployment_pb2.COLLISION_STRATEGY_ENQUEUE,
    )
    return Unary(
        Rpc(DEPLOYMENTS, "CreateDeployment"),
        deployment_service_pb2.CreateDeploymentRequest(deployment=deployment),
        lambda response, _: Deployment.from_proto(response.deployment),
    )


def get_deployment(deployment_id: str) -> Unary[Deployment]:
    """The deployment with this id."""
    return Unary(
        Rpc(DEPLOYMENTS, "GetDeployment"),
        deployment_service_pb2.GetDeploymentRequest(deployment_id=deployment_id),
        lambda response, _: Deployment.from_proto(response.deployment),
    )


def list_deployments(
    *, names: Sequence[str] | None = None, page_size: int = 200
) -> Paged[Deployment]:
    """Every deployment (or those with these `names`); pages of `page_size` are fetched as
    the caller goes."""
    request = deployment_service_pb2.ListDeploymentsRequest(page_size=page_size)
    if names is not None:
        request.deployments.name.any_of.values.extend(names)
    return Paged(
        Rpc(DEPLOYMENTS, "ListDeployments"),
        request,
        "deployments",
        lambda item, _: Deployment.from_proto(item),
    )


def delete_deployment(deployment_id: str) -> Unary[None]:
    """Delete the deployment with this id."""
    return Unary(
        Rpc(DEPLOYMENTS, "DeleteDeployment"),
        deployment_service_pb2.DeleteDeploymentRequest(deployment_id=deployment_id),
        lambda response, _: None,
    )
