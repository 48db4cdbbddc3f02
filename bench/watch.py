"""WatchFlowRun fan-out: delay from a state change to its arrival at every watcher, and the
server's memory with many idle watchers.

Starts its own server (`runwire server start`) on a temporary SQLite database, then:
- for 1, 100 and 1,000 watchers of one run: writes state changes one at a time and measures,
  for every (change, watcher), the time from the server's timestamp of the state (taken when
  the writing transaction starts, so it includes the commit and its fsync) to the watcher
  receiving it, and the time from the writer receiving its acknowledgment (after the commit)
  to the watcher receiving it (negative when the watcher was first);
- opens 10,000 idle watchers (from several client processes) and reads the server's memory.

`--protocols grpc,connect-json,connect-proto` measures the fan-out over each protocol in turn on
the same server: gRPC streams, or Connect server streams over the HTTP edge (one HTTP/1.1
connection per watcher, `application/connect+json` or `application/connect+proto`).

    uv run python bench/watch.py [--changes 30] [--idle 10000] [--protocols grpc]
        [--watchers 1,100,1000]
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.connect_client import open_stream
from bench.harness import Measured, start_runwire
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

STREAMS_PER_CHANNEL = 200
PROTOCOLS = ("grpc", "connect-json", "connect-proto")
WATCH_PATH = "/runwire.v1.FlowRunService/WatchFlowRun"


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
    port: int,
    flow_id: str,
    watchers: int,
    changes: int,
    protocol: str = "grpc",
    http: str = "",
    server: Measured | None = None,
) -> tuple[list[float], list[float], float]:
    """Watchers live in client processes of at most RECEIVERS_PER_PROCESS streams each, as real
    watchers would, so that one Python client is not what is being measured. Returns the
    delays and the server's CPU seconds from the first change to 0.2 s after the last."""
    writer = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(writer)
    run = (
        await runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow_id)
            )
        )
    ).flow_run
    workers = await start_workers(
        port, run.id, watchers, changes, RECEIVERS_PER_PROCESS, protocol, http
    )
    acknowledged: dict[str, float] = {}
    cpu_before = server.cpu_seconds() if server else 0.0
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
    cpu = server.cpu_seconds() - cpu_before if server else 0.0
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
    return from_decision, from_ack, cpu


async def start_workers(
    port: int,
    run_id: str,
    watchers: int,
    changes: int,
    per_process: int,
    protocol: str = "grpc",
    http: str = "",
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
                protocol,
                http,
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


async def worker(
    port: int, run_id: str, count: int, changes: int, protocol: str = "grpc", http: str = ""
) -> None:
    """A client process: open `count` watchers, say "ready"; then either record the delay of
    `changes` state changes on each and print them as JSON, or idle until stdin closes."""
    if protocol != "grpc":
        await http_worker(http, protocol.removeprefix("connect-"), run_id, count, changes)
        return
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


def instant(text: str) -> float:
    """Seconds since 1970 of an RFC 3339 time in UTC as protobuf's JSON writes it."""
    whole, _, fraction = text.removesuffix("Z").partition(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


class HttpWatcher:
    """One Connect watch stream: waits for `caught_up`, then records the arrival of the next
    `changes` state changes (the state's name, the arrival, the state's timestamp)."""

    def __init__(self, codec: str, changes: int, delays: list[tuple[str, float, float]]) -> None:
        loop = asyncio.get_running_loop()
        self.codec = codec
        self.changes = changes
        self.delays = delays
        self.caught_up: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self.raw: list[tuple[bytes, float]] = []

    def on_message(self, message: bytes) -> None:
        arrived = time.time()
        if not self.caught_up.done():
            if self._is_caught_up(message):
                self.caught_up.set_result(None)
            return
        self.raw.append((message, arrived))
        if len(self.raw) == self.changes:
            self.finished.set_result(None)

    def _is_caught_up(self, message: bytes) -> bool:
        if self.codec == "json":
            return "caughtUp" in json.loads(message)
        return watch_pb2.WatchFlowRunResponse.FromString(message).HasField("caught_up")

    def record(self) -> None:
        """Decode what arrived, once the measurement is over."""
        for message, arrived in self.raw:
            if self.codec == "json":
                state = json.loads(message)["flowRunState"]["state"]
                self.delays.append((state["name"], arrived, instant(state["timestamp"])))
            else:
                event = watch_pb2.WatchFlowRunResponse.FromString(message).flow_run_state.state
                self.delays.append((event.name, arrived, event.timestamp.ToNanoseconds() / 1e9))


async def http_worker(url: str, codec: str, run_id: str, count: int, changes: int) -> None:
    """`worker` over the HTTP edge: `count` Connect streams, one connection each."""
    request = (
        json.dumps({"flowRunId": run_id, "heartbeatInterval": "300s"}).encode()
        if codec == "json"
        else watch_pb2.WatchFlowRunRequest(
            flow_run_id=run_id, heartbeat_interval={"seconds": 300}
        ).SerializeToString()
    )
    delays: list[tuple[str, float, float]] = []
    watchers = [HttpWatcher(codec, changes, delays) for _ in range(count)]
    streams = []
    for watcher in watchers:
        streams.append(await open_stream(url, WATCH_PATH, codec, request, watcher.on_message))
    await asyncio.wait_for(asyncio.gather(*[w.caught_up for w in watchers]), timeout=300)
    print("ready", flush=True)
    if not changes:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    else:
        await asyncio.wait_for(asyncio.gather(*[w.finished for w in watchers]), timeout=120)
        for watcher in watchers:
            watcher.record()
        print(json.dumps(delays), flush=True)
    for stream in streams:
        stream.cancel()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def main(
    changes: int,
    idle: int,
    sizes: tuple[int, ...] = (1, 100, 1000),
    protocols: tuple[str, ...] = ("grpc",),
) -> None:
    # Every watcher of the bench comes from one host, which the per-client limit counts as one
    # client; lift it above what the bench opens.
    streams = idle + sum(sizes) * len(protocols)
    os.environ["RUNWIRE_MAX_WATCH_STREAMS_PER_CLIENT"] = str(2 * streams)
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_runwire(f"sqlite:///{tmp}/bench.db")
        http = next((e["http"] for e in proc.lines if e.get("http")), "")
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
                "watchers | protocol      | deliveries | from the state's timestamp: "
                "p50 / p99 / max ms | from the writer's acknowledgment: p50 / p99 ms"
                " | server CPU µs a delivery (the writes included)"
            )
            server = Measured(proc.process.pid)
            for watchers in sizes:
                for protocol in protocols:
                    delays, after_ack, cpu = await fan_out(
                        proc.port, flow.id, watchers, changes, protocol, http, server
                    )
                    ms = [d * 1000 for d in delays]
                    ack_ms = [d * 1000 for d in after_ack]
                    print(
                        f"{watchers:8d} | {protocol:13} | {len(ms):10d} | "
                        f"{statistics.median(ms):6.1f} / {percentile(ms, 0.99):6.1f} / "
                        f"{max(ms):6.1f} | {statistics.median(ack_ms):6.1f} / "
                        f"{percentile(ack_ms, 0.99):6.1f} | {cpu / len(ms) * 1e6:6.0f}",
                        flush=True,
                    )
            if idle:
                await idle_memory(proc, flow.id, idle)
        finally:
            proc.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        port, run_id, count, changes, protocol, http = sys.argv[2:8]
        asyncio.run(worker(int(port), run_id, int(count), int(changes), protocol, http))
        raise SystemExit(0)
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--protocols", default="grpc", help=f"any of {','.join(PROTOCOLS)}")
    parser.add_argument("--watchers", default="1,100,1000", help="the fan-out sizes")
    args = parser.parse_args()
    chosen = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
    if unknown := set(chosen) - set(PROTOCOLS):
        parser.error(f"unknown protocols: {', '.join(sorted(unknown))}")
    sizes = tuple(int(n) for n in args.watchers.split(",") if n.strip())
    asyncio.run(main(args.changes, args.idle, sizes, chosen))
