"""Runwire client: typed access to a Runwire server, view objects, and watching runs.

from runwire import Client, FlowRunView, watch_flow_run

with Client("127.0.0.1:50051") as client:
    run = FlowRunView.from_flow_run_id(run_id, client=client)
    print(run.state, run.get_logs())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runwire import filters
    from runwire._decorators import Flow, Task, exponential_backoff, flow, task
    from runwire._engine import RunRefused
    from runwire._futures import TaskFuture, unmapped
    from runwire._pause import pause_flow_run
    from runwire._run_context import RunCancelled, get_run_logger
    from runwire._values import (
        ConcurrencyLimit,
        Deployment,
        GraphNode,
        HistoryInterval,
        Lease,
        OrchestrationResult,
        ServerInfo,
        proposed_state,
    )
    from runwire.async_client import AsyncClient
    from runwire.client import Client
    from runwire.connection import ConnectionSettings
    from runwire.errors import (
        AlreadyExists,
        DeadlineExceeded,
        FailedPrecondition,
        InvalidArgument,
        NoClient,
        NotFound,
        OutOfRange,
        PermissionDenied,
        ResourceExhausted,
        RunwireError,
        TlsMismatch,
        Unauthenticated,
        Unavailable,
    )
    from runwire.states import Result, State, StateType
    from runwire.views import FlowRunLog, FlowRunView, FlowView, TaskRunView, current_client
    from runwire.watching import watch_flow_run

# The names are imported when first used, so that importing a submodule (the command line,
# runwire.cli) does not import gRPC: gRPC reads its logging settings when it is imported.
_HOMES = {
    **dict.fromkeys(
        ("Flow", "Task", "exponential_backoff", "flow", "task"),
        "_decorators",
    ),
    **dict.fromkeys(("TaskFuture", "unmapped"), "_futures"),
    "RunRefused": "_engine",
    "pause_flow_run": "_pause",
    **dict.fromkeys(("RunCancelled", "get_run_logger"), "_run_context"),
    "AsyncClient": "async_client",
    "Client": "client",
    **dict.fromkeys(
        (
            "ConcurrencyLimit",
            "Deployment",
            "GraphNode",
            "HistoryInterval",
            "Lease",
            "OrchestrationResult",
            "ServerInfo",
            "proposed_state",
        ),
        "_values",
    ),
    "ConnectionSettings": "connection",
    **dict.fromkeys(
        (
            "AlreadyExists",
            "DeadlineExceeded",
            "FailedPrecondition",
            "InvalidArgument",
            "NoClient",
            "NotFound",
            "OutOfRange",
            "PermissionDenied",
            "ResourceExhausted",
            "RunwireError",
            "TlsMismatch",
            "Unauthenticated",
            "Unavailable",
        ),
        "errors",
    ),
    **dict.fromkeys(("Result", "State", "StateType"), "states"),
    **dict.fromkeys(
        ("FlowRunLog", "FlowRunView", "FlowView", "TaskRunView", "current_client"), "views"
    ),
    "watch_flow_run": "watching",
}
# Submodules reached as attributes after a plain `import runwire` (`runwire.errors.NotFound`,
# `runwire.filters.flow_runs(...)`); imported when first used too, for the same reason.
_SUBMODULES = frozenset(
    ("async_client", "client", "connection", "errors", "filters", "states", "views", "watching")
)

if not TYPE_CHECKING:  # for type checkers, the imports above say what the package holds

    def __getattr__(name: str) -> Any:
        if name in _SUBMODULES:
            return importlib.import_module(f"runwire.{name}")
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'runwire' has no attribute {name!r}")
        value = getattr(importlib.import_module(f"runwire.{home}"), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_HOMES, *_SUBMODULES})


__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "ConcurrencyLimit",
    "ConnectionSettings",
    "DeadlineExceeded",
    "Deployment",
    "FailedPrecondition",
    "Flow",
    "FlowRunLog",
    "FlowRunView",
    "FlowView",
    "GraphNode",
    "HistoryInterval",
    "InvalidArgument",
    "Lease",
    "NoClient",
    "NotFound",
    "OrchestrationResult",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Result",
    "RunCancelled",
    "RunRefused",
    "RunwireError",
    "ServerInfo",
    "State",
    "StateType",
    "Task",
    "TaskFuture",
    "TaskRunView",
    "TlsMismatch",
    "Unauthenticated",
    "Unavailable",
    "current_client",
    "exponential_backoff",
    "filters",
    "flow",
    "get_run_logger",
    "pause_flow_run",
    "proposed_state",
    "task",
    "unmapped",
    "watch_flow_run",
]
