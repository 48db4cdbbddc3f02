"""What every workload needs: a server process to measure, a way to drive concurrent calls,
and one figure format."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import ServerProcess, start_server_process  # noqa: E402


@dataclass
class Figure:
    """One measured case: rate, latency, and what it cost the server."""

    workload: str
    case: str
    ops: int  # calls, or the unit `unit` names
    unit: str
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s_per_1000: float | None
    server_peak_rss_mib: float | None
    ratio_to_empty_rpc: float | None = None  # calls/s over the empty RPC's calls/s
    calls_per_op: int = 1
    # The server's CPU per operation over gRPC's for the same case, measured beside it.
    cpu_ratio_to_grpc: float | None = None
    database: str = ""  # sqlite or postgresql, for the workloads that use one
    # The server's CPU per call in empty RPCs: over the empty RPC server's CPU per call at the
    # same concurrency, measured in the same run.
    cpu_in_empty_rpcs: float | None = None

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate_per_s": round(self.rate, 1)}


class Measured:
    """A process whose CPU time and peak memory a figure reports."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


# Called with each server process a workload starts (bench.profile attaches py-spy here).
ON_SERVER_START: list[Callable[[int], None]] = []


def start_runwire(database_url: str) -> ServerProcess:
    """`runwire server start` on its own, as an operator runs it."""
    server = start_server_process(database_url)
    server.drain_output()
    for hook in ON_SERVER_START:
        hook(server.process.pid)
    return server


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def drive(
    op: Callable[[int], Awaitable[Any]],
    total: int,
    concurrency: int,
    max_seconds: float | None = None,
) -> tuple[float, list[float]]:
    """Run `op(i)` for i in range(total) from `concurrency` workers, or until `max_seconds`
    have passed; returns the elapsed time and one latency per call made."""
    latencies: list[float] = []
    counter = iter(range(total))
    stop_at = None if max_seconds is None else time.perf_counter() + max_seconds

    async def worker() -> None:
        for i in counter:
            if stop_at is not None and time.perf_counter() > stop_at:
                return
            started = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return time.perf_counter() - started, latencies


async def measure(
    workload: str,
    case: str,
    server: Measured | None,
    op: Callable[[int], Awaitable[Any]],
    total: int,
    concurrency: int,
    *,
    unit: str = "calls",
    calls_per_op: int = 1,
    max_seconds: float | None = None,
) -> Figure:
    cpu_before = server.cpu_seconds() if server else 0.0
    elapsed, latencies = await drive(op, total, concurrency, max_seconds)
    total = len(latencies)
    cpu = (server.cpu_seconds() - cpu_before) if server else None
    return Figure(
        workload=workload,
        case=case,
        ops=total,
        unit=unit,
        seconds=elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        server_cpu_s_per_1000=None if cpu is None else cpu / total * 1000,
        server_peak_rss_mib=server.peak_rss_mib() if server else None,
        calls_per_op=calls_per_op,
    )
