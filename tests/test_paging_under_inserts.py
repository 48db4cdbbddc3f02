"""Keyset paging stays exact while runs are being inserted (10,000 runs)."""

from __future__ import annotations

import asyncio
import time

from runwire.v1 import filters_pb2 as f
from runwire.v1 import flow_run_pb2
from runwire.v1 import flow_run_service_pb2 as pb
from tests.helpers import make_flow

RUNS = 10_000


async def create_runs(runs, flow_id: str, count: int, concurrency: int = 32) -> list[str]:
    request = pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow_id))
    ids: list[str] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            ids.append((await runs.CreateFlowRun(request)).flow_run.id)

    share, extra = divmod(count, concurrency)
    await asyncio.gather(*[worker(share + (i < extra)) for i in range(concurrency)])
    return ids


async def page_through(runs, criteria: f.FlowRunCriteria, sort: int) -> list[str]:
    seen: list[str] = []
    token = ""
    while True:
        page = await runs.ListFlowRuns(
            pb.ListFlowRunsRequest(filter=criteria, sort=sort, page_size=200, page_token=token)
        )
        seen += [r.id for r in page.flow_runs]
        token = page.next_page_token
        if not token:
            return seen


async def test_pages_through_10000_runs_while_runs_are_inserted(flows, runs):
    flow = await make_flow(flows)
    started = time.monotonic()
    existing = set(await create_runs(runs, flow.id, RUNS))
    print(f"created {RUNS} runs in {time.monotonic() - started:.1f}s")
    criteria = f.FlowRunCriteria(
        flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
    )

    for sort in (
        f.FLOW_RUN_SORT_ID_DESC,
        f.FLOW_RUN_SORT_EXPECTED_START_TIME_ASC,
        f.FLOW_RUN_SORT_NAME_ASC,
    ):
        inserting = asyncio.create_task(create_runs(runs, flow.id, 1_000, concurrency=4))
        seen = await page_through(runs, criteria, sort)
        added = set(await inserting)
        assert len(seen) == len(set(seen)), "a run was seen twice"
        assert existing <= set(seen), f"{len(existing - set(seen))} runs were skipped"
        assert set(seen) <= existing | added
        existing |= added
