"""Runwire client: typed access to a Runwire server, view objects, and watching runs.

from runwire import Client, FlowRunView, watch_flow_run

with Client("127.0.0.1:50051") as client:
    run = FlowRunView.from_flow_run_id(run_id, client=client)
    print(run.state, run.get_logs())
"""

from runwire.async_client import AsyncClient
from runwire.client import Client, OrchestrationResult, proposed_state
from runwire.connection import ConnectionSettings
from runwire.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    RunwireError,
    Unauthenticated,
    Unavailable,
)
from runwire.states import Result, State, StateType
from runwire.views import FlowRunLog, FlowRunView, FlowView, TaskRunView
from runwire.watching import watch_flow_run

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "ConnectionSettings",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FlowRunLog",
    "FlowRunView",
    "FlowView",
    "InvalidArgument",
    "NotFound",
    "OrchestrationResult",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Result",
    "RunwireError",
    "State",
    "StateType",
    "TaskRunView",
    "Unauthenticated",
    "Unavailable",
    "proposed_state",
    "watch_flow_run",
]
