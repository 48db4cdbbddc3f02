"""Runwire's benchmarks, side by side with the ceiling of Python gRPC on this machine.

    uv run python -m bench --quick            # about two minutes
    uv run python -m bench                    # the full run, 10 to 18 minutes
    uv run python -m bench --only lifecycle,reads --json out.json
    uv run python -m bench --only http        # the HTTP edge beside gRPC
    uv run python -m bench --quick --database-url postgresql+psycopg://postgres@127.0.0.1/postgres

Each workload starts its own server process on a temporary SQLite database and drives it from
this process over loopback. With --database-url (a PostgreSQL server; the database it names is
only used to create others) the database workloads then run again, each on a fresh database
made there and dropped afterwards, so both databases are measured in one run. Figures: rate,
p50 and p99 latency, the server's CPU seconds per 1,000 operations, the server's CPU per call in
empty RPCs (the empty RPC server's CPU per call at the same concurrency), the server's peak RSS,
and calls/s as a ratio to the empty RPC at the same concurrency. The table is printed and
written as JSON.

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import http_edge, workloads
from bench.harness import Figure
from tests.conftest import fresh_postgres_database

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
LOG_BATCHES = 2000  # CreateLogs calls (of workloads.LOG_BATCH lines) after the lifecycles


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


def with_ratios(figures: list[Figure], empty: dict[int, Figure]) -> None:
    """Calls/s of each figure over the empty RPC's calls/s at the same concurrency, and the
    server's CPU per call in empty RPCs."""
    for figure in figures:
        found = re.search(r"concurrency (\d+)\b", figure.case)
        concurrency = int(found.group(1)) if found else None
        if concurrency not in empty:
            continue
        ceiling = empty[concurrency]
        figure.ratio_to_empty_rpc = figure.rate * figure.calls_per_op / ceiling.rate
        if figure.server_cpu_s_per_1000 and ceiling.server_cpu_s_per_1000:
            per_call = figure.server_cpu_s_per_1000 / figure.calls_per_op
            figure.cpu_in_empty_rpcs = per_call / ceiling.server_cpu_s_per_1000


@contextmanager
def database(kind: str, tmp: str, name: str, postgres: str) -> Iterator[str]:
    """A fresh database for one workload: a file in `tmp`, or one made on `postgres`."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/{name}.db"
        return
    with fresh_postgres_database(postgres) as url:
        yield url


COLUMNS = (  # title, width
    ("workload", -18),
    ("database", -10),
    ("case", -66),
    ("rate", 15),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("cpu s/1k", 9),
    ("cpu/call", 9),
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
                    f.database,
                    f.case,
                    f"{f.rate:,.0f} {f.unit}/s",
                    f"{f.p50_ms:.2f}",
                    f"{f.p99_ms:.2f}",
                    maybe(f.server_cpu_s_per_1000, ".2f"),
                    maybe(f.cpu_in_empty_rpcs, ".1f"),
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


async def on_database(sizes: Sizes, only: set[str], kind: str, postgres: str) -> list[Figure]:
    """The workloads that use a database, each on a fresh one of `kind`."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        if "lifecycle" in only:
            print(f"lifecycle, then CreateLogs ({kind}) ...", flush=True)
            with database(kind, tmp, "lifecycle", postgres) as url:
                figures += await workloads.lifecycle(url, CONCURRENCY, sizes.runs, LOG_BATCHES)
        if "tasks" in only:
            print(f"task-heavy run ({kind}) ...", flush=True)
            with database(kind, tmp, "tasks", postgres) as url:
                figures += await workloads.task_heavy(url, sizes.tasks)
        if "reads" in only:
            for stored in sizes.stored:
                print(f"reads over {stored:,} runs ({kind}) ...", flush=True)
                with database(kind, tmp, f"reads-{stored}", postgres) as url:
                    figures += await workloads.reads(url, stored, sizes.calls, sizes.heavy_calls)
    for figure in figures:
        figure.database = kind
    return figures


async def run(sizes: Sizes, only: set[str], postgres: str) -> Results:
    figures: list[Figure] = []
    watch_lines: list[str] = []
    http: list[Figure] = []
    http_watch_lines: list[str] = []
    empty: dict[int, Figure] = {}
    if "empty" in only:
        print("empty RPC ...", flush=True)
        for figure in await workloads.empty_rpc(CONCURRENCY, sizes.calls):
            if figure.workload == "empty RPC":
                empty[int(figure.case.rsplit(" ", 1)[1])] = figure
            figures.append(figure)
    for kind in ("sqlite", "postgresql") if postgres else ("sqlite",):
        figures += await on_database(sizes, only, kind, postgres)
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
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL server's URL: run the database workloads there too, side by side",
    )
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url names a PostgreSQL server (postgresql+psycopg://...)")
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    if unknown := only - set(WORKLOADS):
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    results = asyncio.run(run(sizes, only, args.database_url))
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
