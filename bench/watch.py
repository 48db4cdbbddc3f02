"""WatchFlowRun fan-out: delay from a state change to its arrival at every watcher, and the
server's memory with many idle watchers.

Starts its own server (`runwire server start`) on a temporary SQLite database, then:
- for 1, 100 and 1,000 watchers of one run: writes state changes one at a time and measures,
  for every (change, watcher), the time from the server's timestamp of the state (taken when
  the writing transaction starts, so it includes the commit and its fsync) to the watcher
  receiving it, and the time from the writer receiving its acknowledgment (after the commit)
  to the watcher receiving it (negative when the watcher was first);
- opens 10,000 idle watchers (from several client processes) and reads the server's memory.

    uv run python bench/watch.py [--changes 30] [--idle 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    watch_pb2,
)
from tests.conftest import start_server_process

STREAMS_PER_CHANNEL = 200


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def open_watchers(channels, run_id: str, count: int, heartbeat_s: int = 300):
    request = watch_pb2.WatchFlowRunRequest(
        flow_run_id=run_id, heartbeat_interval={"seconds": heartbeat_s}
    )
    streams = []
    for i in range(count):
        stub = flow_run_service_pb2_grpc.FlowRunServiceStub(channels[i // STREAMS_PER_CHANNEL])
        streams.append(stub.WatchFlowRun(request))

    async def caught_up(stream) -> None:
        while (await stream.read()).WhichOneof("event") != "caught_up":
            pass

    await asyncio.gather(*[caught_up(s) for s in streams])
    return streams


async def fan_out(
    port: int, flow_id: str, watchers: int, changes: int
) -> tuple[list[float], list[float]]:
    """Watchers live in client processes of at most RECEIVERS_PER_PROCESS streams each, as real
    watchers would, so that one Python client is not what is being measured."""
    writer = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(writer)
    run = (
        await runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow_id)
            )
        )
    ).flow_run
    workers = await start_workers(port, run.id, watchers, changes, RECEIVERS_PER_PROCESS)
    acknowledged: dict[str, float] = {}
    for i in range(changes):
        # force: alternate RUNNING and PENDING without the claim rules, to make many changes.
        kind = state_pb2.STATE_TYPE_RUNNING if i % 2 == 0 else state_pb2.STATE_TYPE_PENDING
        await runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(
                flow_run_id=run.id, state=state_pb2.State(type=kind, name=f"s{i}"), force=True
            )
        )
        acknowledged[f"s{i}"] = time.time()
        await asyncio.sleep(0.2)
    from_decision: list[float] = []
    from_ack: list[float] = []
    for worker_process in workers:
        assert worker_process.stdout is not None
        line = await asyncio.wait_for(worker_process.stdout.readline(), timeout=120)
        for name, arrived, decided in json.loads(line):
            from_decision.append(arrived - decided)
            from_ack.append(arrived - acknowledged[name])
        await worker_process.wait()
    await writer.close()
    return from_decision, from_ack


async def start_workers(
    port: int, run_id: str, watchers: int, changes: int, per_process: int
) -> list[asyncio.subprocess.Process]:
    """Start client processes holding `watchers` streams in all; return once all caught up."""
    workers = []
    for start in range(0, watchers, per_process):
        count = min(per_process, watchers - start)
        workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                str(port),
                run_id,
                str(count),
                str(changes),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=2**24,  # a worker reports all its delays on one line
            )
        )
    for worker_process in workers:
        assert worker_process.stdout is not None
        line = await asyncio.wait_for(worker_process.stdout.readline(), timeout=300)
        assert line.strip() == b"ready", line
    return workers


RECEIVERS_PER_PROCESS = 250
WATCHERS_PER_PROCESS = 1000


async def idle_memory(proc, flow_id: str, idle: int) -> None:
    """Open `idle` watchers from several client processes (one Python client process holds
    about a thousand streams well) and read the server's memory once all are caught up."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        run = (
            await runs.CreateFlowRun(
                flow_run_service_pb2.CreateFlowRunRequest(
                    flow_run=flow_run_pb2.FlowRun(flow_id=flow_id)
                )
            )
        ).flow_run
    before = rss_mib(proc.process.pid)
    started = time.monotonic()
    workers = await start_workers(proc.port, run.id, idle, 0, WATCHERS_PER_PROCESS)
    opened = time.monotonic() - started
    await asyncio.sleep(2)
    print(
        f"{idle} idle watchers ({len(workers)} client processes): all caught up in {opened:.1f}s; "
        f"server RSS {rss_mib(proc.process.pid):.0f} MiB (was {before:.0f} MiB; "
        f"{(rss_mib(proc.process.pid) - before) * 1024 / idle:.0f} KiB a watcher)"
    )
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.close()
        await worker.wait()


async def worker(port: int, run_id: str, count: int, changes: int) -> None:
    """A client process: open `count` watchers, say "ready"; then either record the delay of
    `changes` state changes on each and print them as JSON, or idle until stdin closes."""
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        for _ in range(-(-count // STREAMS_PER_CHANNEL))
    ]
    streams = await open_watchers(channels, run_id, count)
    print("ready", flush=True)
    if not changes:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for stream in streams:
            stream.cancel()
        return
    delays: list[tuple[str, float, float]] = []

    async def receive(stream: Any) -> None:
        for _ in range(changes):
            message = await stream.read()
            arrived = time.time()
            state = message.flow_run_state.state
            delays.append((state.name, arrived, state.timestamp.ToNanoseconds() / 1e9))

    await asyncio.wait_for(asyncio.gather(*[receive(s) for s in streams]), timeout=120)
    print(json.dumps(delays), flush=True)
    for stream in streams:
        stream.cancel()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def main(changes: int, idle: int, sizes: tuple[int, ...] = (1, 100, 1000)) -> None:
    # Every watcher of the bench comes from one host, which the per-client limit counts as one
    # client; lift it above what the bench opens.
    os.environ["RUNWIRE_MAX_WATCH_STREAMS_PER_CLIENT"] = str(2 * (idle + sum(sizes)))
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server_process(f"sqlite:///{tmp}/bench.db")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
                flows = flow_service_pb2_grpc.FlowServiceStub(channel)
                flow = (
                    await flows.CreateFlow(
                        flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="bench"))
                    )
                ).flow
            print(f"server RSS at start: {rss_mib(proc.process.pid):.0f} MiB")
            print(
                "watchers | deliveries | from the state's timestamp: p50 / p99 / max ms"
                " | from the writer's acknowledgment: p50 / p99 ms"
            )
            for watchers in sizes:
                delays, after_ack = await fan_out(proc.port, flow.id, watchers, changes)
                ms = [d * 1000 for d in delays]
                ack_ms = [d * 1000 for d in after_ack]
                print(
                    f"{watchers:8d} | {len(ms):10d} | {statistics.median(ms):6.1f} / "
                    f"{percentile(ms, 0.99):6.1f} / {max(ms):6.1f} | "
                    f"{statistics.median(ack_ms):6.1f} / {percentile(ack_ms, 0.99):6.1f}"
                )
            if idle:
                await idle_memory(proc, flow.id, idle)
        finally:
            proc.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(worker(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
        raise SystemExit(0)
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--idle", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.changes, args.idle))
