"""Retention soak: lifecycles for a long while with short retention windows; the database's
size, its row counts and the server's memory must level out instead of growing with the runs.

Starts `runwire server start` on a temporary database (or --database-url) with the retention
settings given, drives lifecycles (create, RUNNING, a few logs, COMPLETED) from concurrent
clients, and prints one line per sample (also written as JSON).

    uv run python -m bench.soak                       # 20 minutes, events kept 2 minutes,
                                                      # runs 5 minutes
    uv run python -m bench.soak --minutes 3 --event-retention 30 --run-retention 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from sqlalchemy import create_engine, func, make_url, select, text

from bench.harness import Measured, start_runwire
from runwire.v1 import (
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_pb2,
    log_service_pb2,
    log_service_pb2_grpc,
    state_pb2,
)
from runwire_server.storage import models as m


@dataclass
class Sample:
    minute: float
    lifecycles: int
    lifecycles_per_s: float  # over the last sample
    database_mib: float
    rss_mib: float
    flow_runs: int
    run_events: int
    logs: int


async def lifecycle(channel: grpc.aio.Channel, flow_id: str, log_lines: int) -> None:
    runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
    logs = log_service_pb2_grpc.LogServiceStub(channel)
    run = (
        await runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow_id, tags=["soak"])
            )
        )
    ).flow_run
    await runs.SetFlowRunState(
        flow_run_service_pb2.SetFlowRunStateRequest(
            flow_run_id=run.id, state=state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING)
        )
    )
    await logs.CreateLogs(
        log_service_pb2.CreateLogsRequest(
            logs=[
                log_pb2.Log(flow_run_id=run.id, name="soak", level=20, message=f"line {i}")
                for i in range(log_lines)
            ]
        )
    )
    await runs.SetFlowRunState(
        flow_run_service_pb2.SetFlowRunStateRequest(
            flow_run_id=run.id, state=state_pb2.State(type=state_pb2.STATE_TYPE_COMPLETED)
        )
    )


def database_mib(url: str, engine: object) -> float:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        files = [path, path.with_name(path.name + "-wal")]
        return sum(f.stat().st_size for f in files if f.exists()) / 2**20
    with engine.connect() as conn:  # type: ignore[attr-defined]
        size = conn.scalar(text("SELECT pg_database_size(current_database())"))
    return int(size or 0) / 2**20


def counts(engine: object) -> tuple[int, int, int]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return tuple(  # type: ignore[return-value]
            int(conn.scalar(select(func.count()).select_from(model)) or 0)
            for model in (m.FlowRun, m.RunEvent, m.Log)
        )


async def soak(args: argparse.Namespace) -> list[Sample]:
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'soak.db'}"
    os.environ.update(
        RUNWIRE_EVENT_RETENTION_SECONDS=str(args.event_retention),
        RUNWIRE_RUN_RETENTION_SECONDS=str(args.run_retention),
        RUNWIRE_RETENTION_INTERVAL_SECONDS=str(args.interval),
    )
    server = start_runwire(url)
    measured = Measured(server.process.pid)
    engine = create_engine(url)
    samples: list[Sample] = []
    done = 0
    stop = asyncio.Event()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            flow = (
                await flows.CreateFlow(
                    flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="soak"))
                )
            ).flow

            async def worker() -> None:
                nonlocal done
                while not stop.is_set():
                    await lifecycle(channel, flow.id, args.logs)
                    done += 1

            workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
            started = time.monotonic()
            last_done, last_at = 0, started
            print(
                "minute  lifecycles  per s  database MiB  RSS MiB  flow_runs  run_events  logs",
                flush=True,
            )
            while time.monotonic() - started < args.minutes * 60:
                await asyncio.sleep(args.sample)
                now = time.monotonic()
                runs, events, logs = await asyncio.to_thread(counts, engine)
                sample = Sample(
                    minute=round((now - started) / 60, 2),
                    lifecycles=done,
                    lifecycles_per_s=round((done - last_done) / (now - last_at), 1),
                    database_mib=round(await asyncio.to_thread(database_mib, url, engine), 1),
                    rss_mib=round(measured.process.memory_info().rss / 2**20, 1),
                    flow_runs=runs,
                    run_events=events,
                    logs=logs,
                )
                last_done, last_at = done, now
                samples.append(sample)
                print(
                    f"{sample.minute:6.2f}  {sample.lifecycles:10d}  {sample.lifecycles_per_s:5.1f}"
                    f"  {sample.database_mib:12.1f}  {sample.rss_mib:7.1f}  {runs:9d}"
                    f"  {events:10d}  {logs:5d}",
                    flush=True,
                )
            stop.set()
            await asyncio.gather(*workers)
    finally:
        engine.dispose()
        server.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--event-retention", type=float, default=120, help="seconds")
    parser.add_argument("--run-retention", type=float, default=300, help="seconds (0: keep)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between passes")
    parser.add_argument("--sample", type=float, default=30, help="seconds between samples")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--logs", type=int, default=5, help="log lines per lifecycle")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--json", default="soak-results.json")
    args = parser.parse_args()
    samples = asyncio.run(soak(args))
    Path(args.json).write_text(
        json.dumps({"settings": vars(args), "samples": [asdict(s) for s in samples]}, indent=2)
        + "\n"
    )
    print(f"samples written to {args.json}")


if __name__ == "__main__":
    main()
