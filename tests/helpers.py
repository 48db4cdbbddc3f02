"""Test helpers: unique names, quick creates and reading error details off a failed call."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from runwire.v1 import flow_pb2, flow_run_pb2, flow_run_service_pb2, flow_service_pb2

INTEROP = Path(__file__).parent / "interop"


def node_packages() -> tuple[str, Path]:
    """`node`, and the packages tests/interop locks, installed by `npm ci` when they are
    missing or older than the lock file; skips the test on a machine without node and npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed")
    modules = INTEROP / "node_modules"
    installed = modules / ".package-lock.json"  # what npm last installed there
    lock = INTEROP / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True, timeout=300)
    return node, modules


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: dict[str, str]
    fields: list[str]


def details_of(error: grpc.aio.AioRpcError) -> ErrorDetails:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    info = error_details_pb2.ErrorInfo()
    bad = error_details_pb2.BadRequest()
    if status is not None:
        for detail in status.details:
            if detail.Is(info.DESCRIPTOR):
                detail.Unpack(info)
            elif detail.Is(bad.DESCRIPTOR):
                detail.Unpack(bad)
    return ErrorDetails(
        code=error.code(),
        message=error.details() or "",
        reason=info.reason,
        domain=info.domain,
        metadata=dict(info.metadata),
        fields=[v.field for v in bad.field_violations],
    )


def retry_delay(error: grpc.RpcError) -> float:
    """The seconds a status's google.rpc.RetryInfo asks the client to wait (0 without one)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    return 0.0


async def expect_error(call: Any, code: grpc.StatusCode, field: str | None = None) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert details.code == code, details
    if code is not grpc.StatusCode.UNIMPLEMENTED:
        assert details.domain == "runwire.dev"
        assert details.reason
    if field is not None:
        assert field in details.fields, details
        assert details.metadata["field"] == field
    return details


async def make_flow(flows: Any, name: str | None = None, **fields: Any) -> flow_pb2.Flow:
    response = await flows.CreateFlow(
        flow_service_pb2.CreateFlowRequest(
            flow=flow_pb2.Flow(name=name or unique("flow"), **fields)
        )
    )
    return response.flow  # type: ignore[no-any-return]


async def make_run(runs: Any, flow_id: str, **fields: Any) -> flow_run_pb2.FlowRun:
    response = await runs.CreateFlowRun(
        flow_run_service_pb2.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(flow_id=flow_id, **fields)
        )
    )
    return response.flow_run  # type: ignore[no-any-return]


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


async def history(
    runs, start: datetime, end: datetime, step: timedelta, criteria: Any
) -> dict[tuple[int, str], tuple[int, timedelta, timedelta]]:
    """GetFlowRunHistory as {(interval, state name): (runs, run time, lateness)}."""
    response = await runs.GetFlowRunHistory(
        flow_run_service_pb2.GetFlowRunHistoryRequest(
            history_start=ts(start),
            history_end=ts(end),
            history_interval=duration_pb2.Duration(seconds=int(step.total_seconds())),
            filter=criteria,
        )
    )
    return {
        (i, s.state_name): (
            s.count_runs,
            s.sum_estimated_run_time.ToTimedelta(),
            s.sum_estimated_lateness.ToTimedelta(),
        )
        for i, interval in enumerate(response.intervals)
        for s in interval.states
    }
