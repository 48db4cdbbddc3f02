"""Lifecycle throughput: create a run, then RUNNING, then COMPLETED, from concurrent clients.

Starts its own server (`runwire server start`) on a temporary database and prints figures.

    uv run python bench/lifecycle.py [--runs 2000] [--concurrency 16] [--database-url URL]
        [--replicas N]    # N servers on one (PostgreSQL) database, clients spread over them
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runwire.v1 import (
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    state_pb2,
)
from tests.conftest import start_server_process


async def lifecycle(runs: flow_run_service_pb2_grpc.FlowRunServiceStub, flow_id: str) -> float:
    started = time.perf_counter()
    run = (
        await runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow_id)
            )
        )
    ).flow_run
    for state_type in (state_pb2.STATE_TYPE_RUNNING, state_pb2.STATE_TYPE_COMPLETED):
        await runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(
                flow_run_id=run.id, state=state_pb2.State(type=state_type)
            )
        )
    return time.perf_counter() - started


async def main(total: int, concurrency: int, database_url: str, replicas: int = 1) -> None:
    procs = [start_server_process(database_url) for _ in range(replicas)]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p.port}") for p in procs]
    try:
        channel = channels[0]
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        stubs = [flow_run_service_pb2_grpc.FlowRunServiceStub(c) for c in channels]
        runs = stubs[0]
        flow = (
            await flows.CreateFlow(
                flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="bench"))
            )
        ).flow
        latencies: list[float] = []

        async def worker(count: int, stub: flow_run_service_pb2_grpc.FlowRunServiceStub) -> None:
            for _ in range(count):
                latencies.append(await lifecycle(stub, flow.id))

        share, extra = divmod(total, concurrency)
        started = time.perf_counter()
        await asyncio.gather(
            *[worker(share + (i < extra), stubs[i % replicas]) for i in range(concurrency)]
        )
        elapsed = time.perf_counter() - started
        list_started = time.perf_counter()
        for _ in range(50):
            await runs.ListFlowRuns(flow_run_service_pb2.ListFlowRunsRequest(page_size=200))
        list_ms = (time.perf_counter() - list_started) / 50 * 1000
    finally:
        for channel in channels:
            await channel.close()
        for proc in procs:
            proc.stop()
    latencies.sort()
    print(
        f"database: {database_url.split(':')[0]}; {replicas} server(s); "
        f"{total} lifecycles, concurrency {concurrency}"
    )
    rate = total / elapsed
    print(f"lifecycles/s: {rate:.0f}  (state-changing RPCs/s: {3 * rate:.0f})")
    print(
        f"lifecycle latency ms: p50 {statistics.median(latencies) * 1000:.1f}, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f}"
    )
    print(f"ListFlowRuns of 200 runs: {list_ms:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--replicas", type=int, default=1, help="servers on one database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        asyncio.run(main(args.runs, args.concurrency, url, args.replicas))
