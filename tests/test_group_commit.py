"""Concurrent writes: each caller gets its own answer, whether or not the writes shared a
transaction (on SQLite they do: storage.group_commit), and nothing is written twice."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from runwire.v1 import filters_pb2 as f
from runwire.v1 import (
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    orchestration_pb2,
    state_pb2,
)
from tests.conftest import free_port, start_server_process
from tests.helpers import details_of, make_flow, make_run

ACCEPT = orchestration_pb2.SET_STATE_STATUS_ACCEPT


def batches(metrics_port: int, outcome: str) -> float:
    """How many group-commit batches of this outcome the server has run."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    key = f'runwire_write_batch_size_count{{outcome="{outcome}"}} '
    return sum(float(line[len(key) :]) for line in text.splitlines() if line.startswith(key))


def set_state(runs: Any, run_id: str, state_type: int) -> Any:
    return runs.SetFlowRunState(
        flow_run_service_pb2.SetFlowRunStateRequest(
            flow_run_id=run_id, state=state_pb2.State(type=state_type)
        )
    )


async def states_of(runs: Any, run_id: str) -> list[int]:
    response = await runs.ListFlowRunStates(
        flow_run_service_pb2.ListFlowRunStatesRequest(flow_run_id=run_id)
    )
    return [s.type for s in response.states]


async def test_concurrent_state_changes_share_transactions_and_get_their_own_answers(
    tmp_path: Path,
) -> None:
    # A server process, so that the calls arrive concurrently as they do in production (in
    # this process, client and server would take turns on one event loop).
    metrics_port = free_port()
    proc = start_server_process(
        f"sqlite:///{tmp_path / 'group.db'}", "--metrics-address", f"127.0.0.1:{metrics_port}"
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
            await changes_answered_one_by_one(flows, runs, metrics_port)
    finally:
        proc.stop()


async def changes_answered_one_by_one(flows: Any, runs: Any, metrics_port: int) -> None:
    flow = await make_flow(flows)
    # Whether calls that arrive together share a batch depends on how the two processes are
    # scheduled; on a busy machine most rounds may run their writes one by one.
    for _round in range(25):
        created = await asyncio.gather(*(make_run(runs, flow.id) for _ in range(24)))
        ids = [run.id for run in created]
        results = await asyncio.gather(
            *(set_state(runs, run_id, state_pb2.STATE_TYPE_RUNNING) for run_id in ids)
        )
        assert all(r.result.status == ACCEPT and r.result.state_written for r in results)

        # Mixed with calls that fail: the failures get NOT_FOUND, the others are accepted,
        # and no state is written twice when a shared transaction is split and run again.
        missing = [str(uuid.uuid4()) for _ in range(8)]
        calls = [set_state(runs, run_id, state_pb2.STATE_TYPE_COMPLETED) for run_id in ids]
        for i, run_id in enumerate(missing):
            calls.insert(3 * i + 1, set_state(runs, run_id, state_pb2.STATE_TYPE_COMPLETED))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        answers = [o for o in outcomes if not isinstance(o, BaseException)]
        assert {details_of(e).code for e in failures} == {grpc.StatusCode.NOT_FOUND}
        assert sorted(details_of(e).metadata["resourceName"] for e in failures) == sorted(missing)
        assert len(answers) == len(ids)
        assert all(a.result.status == ACCEPT and a.result.state_written for a in answers)
        expected = [
            state_pb2.STATE_TYPE_PENDING,
            state_pb2.STATE_TYPE_RUNNING,
            state_pb2.STATE_TYPE_COMPLETED,
        ]
        for run_id in ids:
            assert await states_of(runs, run_id) == expected
        committed = await asyncio.to_thread(batches, metrics_port, "committed")
        split = await asyncio.to_thread(batches, metrics_port, "split")
        if committed and split:
            return
    pytest.fail(f"no shared transaction was seen: {committed} committed, {split} split")


async def test_concurrent_creates_with_one_idempotency_key_make_one_run(
    flows: Any, runs: Any
) -> None:
    flow = await make_flow(flows)
    request = flow_run_service_pb2.CreateFlowRunRequest(
        flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, idempotency_key="once")
    )
    responses = await asyncio.gather(*(runs.CreateFlowRun(request) for _ in range(12)))
    assert sum(r.created for r in responses) == 1
    assert len({r.flow_run.id for r in responses}) == 1
    count = await runs.CountFlowRuns(
        flow_run_service_pb2.CountFlowRunsRequest(
            filter=f.FlowRunCriteria(
                flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
            )
        )
    )
    assert count.count == 1
    assert await states_of(runs, responses[0].flow_run.id) == [state_pb2.STATE_TYPE_PENDING]


async def test_a_failing_create_among_concurrent_creates_changes_nothing_else(
    flows: Any, runs: Any
) -> None:
    flow = await make_flow(flows)
    good = [
        runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, name=f"good-{i}")
            )
        )
        for i in range(6)
    ]
    bad = runs.CreateFlowRun(
        flow_run_service_pb2.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(flow_id=str(uuid.uuid4()))
        )
    )
    outcomes = await asyncio.gather(*good[:3], bad, *good[3:], return_exceptions=True)
    assert isinstance(outcomes[3], grpc.aio.AioRpcError)
    assert outcomes[3].code() == grpc.StatusCode.NOT_FOUND
    made = [o for i, o in enumerate(outcomes) if i != 3]
    assert all(not isinstance(o, BaseException) and o.created for o in made)
    listed = await runs.ListFlowRuns(
        flow_run_service_pb2.ListFlowRunsRequest(
            filter=f.FlowRunCriteria(
                flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
            )
        )
    )
    assert sorted(r.name for r in listed.flow_runs) == [f"good-{i}" for i in range(6)]
