"""The generated stubs of every Runwire service on one channel: what both clients' raw calls
take (`client.call(client.flow_runs.GetFlowRun, request)`) and what their plans name."""

from __future__ import annotations

from typing import Any

from runwire.v1 import (
    concurrency_limit_service_pb2_grpc,
    deployment_service_pb2_grpc,
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    log_service_pb2_grpc,
    server_service_pb2_grpc,
    task_run_service_pb2_grpc,
)


class ServiceStubs:
    """A client's stubs, one attribute per service (the names plans' `Rpc.service` use)."""

    flows: flow_service_pb2_grpc.FlowServiceStub
    flow_runs: flow_run_service_pb2_grpc.FlowRunServiceStub
    task_runs: task_run_service_pb2_grpc.TaskRunServiceStub
    logs: log_service_pb2_grpc.LogServiceStub
    deployments: deployment_service_pb2_grpc.DeploymentServiceStub
    limits: concurrency_limit_service_pb2_grpc.ConcurrencyLimitServiceStub
    server: server_service_pb2_grpc.ServerServiceStub

    def _attach_stubs(self, channel: Any) -> None:
        self.flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        self.flow_runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        self.task_runs = task_run_service_pb2_grpc.TaskRunServiceStub(channel)
        self.logs = log_service_pb2_grpc.LogServiceStub(channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(channel)
        self.limits = concurrency_limit_service_pb2_grpc.ConcurrencyLimitServiceStub(channel)
        self.server = server_service_pb2_grpc.ServerServiceStub(channel)
