"""Concurrency limits on task-run tags: the plans of their calls."""

from __future__ import annotations

from runwire._plans import Paged, Rpc, Unary
from runwire._values import ConcurrencyLimit
from runwire.v1 import concurrency_limit_service_pb2 as service

LIMITS = "limits"


def set_concurrency_limit(tag: str, limit: int) -> Unary[ConcurrencyLimit]:
    """Allow at most `limit` task runs with this tag to run at once."""
    return Unary(
        Rpc(LIMITS, "CreateConcurrencyLimit"),
        service.CreateConcurrencyLimitRequest(tag=tag, concurrency_limit=limit),
        lambda response, _: ConcurrencyLimit.from_proto(response.concurrency_limit),
    )


def get_concurrency_limit(tag: str) -> Unary[ConcurrencyLimit]:
    """The limit on this tag, with the task runs that hold its slots."""
    return Unary(
        Rpc(LIMITS, "GetConcurrencyLimit"),
        service.GetConcurrencyLimitRequest(tag=tag),
        lambda response, _: ConcurrencyLimit.from_proto(response.concurrency_limit),
    )


def list_concurrency_limits() -> Paged[ConcurrencyLimit]:
    """Every concurrency limit."""
    return Paged(
        Rpc(LIMITS, "ListConcurrencyLimits"),
        service.ListConcurrencyLimitsRequest(page_size=200),
        "concurrency_limits",
        lambda item, _: ConcurrencyLimit.from_proto(item),
    )


def delete_concurrency_limit(tag: str) -> Unary[None]:
    """Remove the limit on this tag."""
    return Unary(
        Rpc(LIMITS, "DeleteConcurrencyLimit"),
        service.DeleteConcurrencyLimitRequest(tag=tag),
        lambda response, _: None,
    )
