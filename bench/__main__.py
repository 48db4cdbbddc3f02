"""Runwire's benchmarks, side by side with the ceiling of Python gRPC on this machine.

    uv run python -m bench --quick            # about two minutes
    uv run python -m bench                    # the full run, 10 to 18 minutes
    uv run python -m bench --only lifecycle,reads --json out.json
    uv run python -m bench --only http        # the HTTP edge beside gRPC

Each workload starts its own server process on a temporary SQLite database and drives it from
this process over loopback. Figures: rate, p50 and p99 latency, the server's CPU seconds per
1,000 operations, the server's peak RSS, and calls/s as a ratio to the empty RPC at the same
concurrency. The table is printed and written as JSON.

The HTTP edge has its own table (bench.http_edge): the same calls over gRPC, Connect binary
and Connect JSON on one server, taking turns, with each protocol's CPU per call over gRPC's;
then the watch fan-out over gRPC and Connect streams on one server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import http_edge, workloads
from bench.harness import Figure

WORKLOADS = ("empty", "lifecycle", "tasks", "reads", "watch", "http")
# The watch fan-out over each protocol, side by side on one server (bench/watch.py).
HTTP_WATCH_PROTOCOLS = "grpc,connect-json,connect-proto"


@dataclass(frozen=True)
class Sizes:
    calls: int  # empty RPC and GetFlowRun calls per case
    runs: int  # lifecycles per concurrency
    tasks: int
    stored: tuple[int, ...]  # runs in the database for the read figures
    heavy_calls: int  # CountFlowRuns and GetFlowRunHistory calls
    watch_changes: int
    watch_idle: int


QUICK = Sizes(
    calls=3000,
    runs=600,
    tasks=300,
    stored=(10_000,),
    heavy_calls=20,
    watch_changes=10,
    watch_idle=0,
)
FULL = Sizes(
    calls=20_000,
    runs=3000,
    tasks=1000,
    stored=(10_000, 1_000_000),
    heavy_calls=100,
    watch_changes=30,
    watch_idle=10_000,
)
CONCURRENCY = (1, 16, 64)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def with_ratios(figures: list[Figure], empty: dict[int, float]) -> None:
    """Calls/s of each figure over the empty RPC's calls/s at the same concurrency."""
    for figure in figures:
        found = re.search(r"concurrency (\d+)\b", figure.case)
        concurrency = int(found.group(1)) if found else None
        if concurrency in empty:
            figure.ratio_to_empty_rpc = figure.rate * figure.calls_per_op / empty[concurrency]


COLUMNS = (  # title, width
    ("workload", -18),
    ("case", -58),
    ("rate", 15),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("cpu s/1k", 9),
    ("RSS MiB", 8),
    ("vs empty", 9),
)


def table(figures: list[Figure]) -> str:
    def row(cells: list[str]) -> str:
        return " ".join(
            f"{cell:<{-width}}" if width < 0 else f"{cell:>{width}}"
            for cell, (_, width) in zip(cells, COLUMNS, strict=True)
        )

    def maybe(value: float | None, form: str) -> str:
        return "" if value is None else format(value, form)

    header = row([title for title, _ in COLUMNS])
    lines = [header, "-" * len(header)]
    for f in figures:
        lines.append(
            row(
                [
                    f.workload,
                    f.case,
                    f"{f.rate:,.0f} {f.unit}/s",
                    f"{f.p50_ms:.2f}",
                    f"{f.p99_ms:.2f}",
                    maybe(f.server_cpu_s_per_1000, ".2f"),
                    maybe(f.server_peak_rss_mib, ".0f"),
                    maybe(f.ratio_to_empty_rpc, ".0%"),
                ]
            )
        )
    return "\n".join(lines)


HTTP_COLUMNS = (  # title, width
    ("workload", -13),
    ("case", -72),
    ("rate", 15),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("cpu s/1k", 9),
    ("cpu vs gRPC", 12),
    ("verdict", -20),
)


def http_table(figures: list[Figure]) -> str:
    def row(cells: list[str]) -> str:
        return " ".join(
            f"{cell:<{-width}}" if width < 0 else f"{cell:>{width}}"
            for cell, (_, width) in zip(cells, HTTP_COLUMNS, strict=True)
        )

    header = row([title for title, _ in HTTP_COLUMNS])
    lines = [header, "-" * len(header)]
    for f in figures:
        lines.append(
            row(
                [
                    f.workload,
                    f.case,
                    f"{f.rate:,.0f} {f.unit}/s",
                    f"{f.p50_ms:.2f}",
                    f"{f.p99_ms:.2f}",
                    f"{f.server_cpu_s_per_1000:.2f}" if f.server_cpu_s_per_1000 else "",
                    f"{f.cpu_ratio_to_grpc:.2f}x" if f.cpu_ratio_to_grpc else "",
                    http_edge.verdict(f),
                ]
            )
        )
    return "\n".join(lines)


@dataclass
class Results:
    figures: list[Figure]
    watch_lines: list[str]
    http: list[Figure]
    http_watch_lines: list[str]


async def run(sizes: Sizes, only: set[str]) -> Results:
    figures: list[Figure] = []
    watch_lines: list[str] = []
    http: list[Figure] = []
    http_watch_lines: list[str] = []
    empty: dict[int, float] = {}
    if "empty" in only:
        print("empty RPC ...", flush=True)
        for figure in await workloads.empty_rpc(CONCURRENCY, sizes.calls):
            if figure.workload == "empty RPC":
                empty[int(figure.case.rsplit(" ", 1)[1])] = figure.rate
            figures.append(figure)
    with tempfile.TemporaryDirectory() as tmp:
        if "lifecycle" in only:
            print("lifecycle ...", flush=True)
            figures += await workloads.lifecycle(
                f"sqlite:///{tmp}/lifecycle.db", CONCURRENCY, sizes.runs
            )
        if "tasks" in only:
            print("task-heavy run ...", flush=True)
            figures += await workloads.task_heavy(f"sqlite:///{tmp}/tasks.db", sizes.tasks)
        if "reads" in only:
            for stored in sizes.stored:
                print(f"reads over {stored:,} runs ...", flush=True)
                figures += await workloads.reads(
                    f"sqlite:///{tmp}/reads-{stored}.db", stored, sizes.calls, sizes.heavy_calls
                )
    if "watch" in only:
        print("watch ...", flush=True)
        try:
            watch_lines = await asyncio.to_thread(
                workloads.watch, sizes.watch_changes, sizes.watch_idle
            )
        except Exception as exc:  # keep the figures measured so far; main exits non-zero
            last = str(exc).strip().splitlines()[-1:] or [repr(exc)]
            watch_lines = [f"FAILED: {last[0]}"]
    if "http" in only:
        with tempfile.TemporaryDirectory() as tmp:
            print("HTTP edge beside gRPC ...", flush=True)
            http = await http_edge.http_edge(
                f"sqlite:///{tmp}/http.db", sizes.stored[0], sizes.calls, sizes.runs
            )
        print("watch over gRPC and HTTP ...", flush=True)
        try:
            http_watch_lines = await asyncio.to_thread(
                workloads.watch, sizes.watch_changes, 0, HTTP_WATCH_PROTOCOLS
            )
        except Exception as exc:
            last = str(exc).strip().splitlines()[-1:] or [repr(exc)]
            http_watch_lines = [f"FAILED: {last[0]}"]
    with_ratios(figures, empty)
    return Results(figures, watch_lines, http, http_watch_lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: about two minutes")
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument("--json", default="bench-results.json", help="where to write the figures")
    args = parser.parse_args()
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    if unknown := only - set(WORKLOADS):
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    results = asyncio.run(run(sizes, only))
    elapsed = time.monotonic() - started
    print()
    if results.figures:
        print(table(results.figures))
    for line in results.watch_lines:
        print(f"watch: {line}")
    if results.http:
        print()
        print(http_table(results.http))
    for line in results.http_watch_lines:
        print(f"http watch: {line}")
    mode, host = "quick" if args.quick else "full", machine()
    print(f"\n{mode} run in {elapsed:.0f}s on {host['cpus']} CPUs ({host['cpu']})")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "seconds": round(elapsed),
        "machine": host,
        "figures": [f.as_dict() for f in results.figures],
        "watch": results.watch_lines,
        "http": [{**f.as_dict(), "verdict": http_edge.verdict(f)} for f in results.http],
        "http_watch": results.http_watch_lines,
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {args.json}")
    if any(line.startswith("FAILED") for line in results.watch_lines + results.http_watch_lines):
        sys.exit(1)


if __name__ == "__main__":
    main()
