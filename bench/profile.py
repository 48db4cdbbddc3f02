"""Profile the server under one workload with py-spy and print where its time goes.

    uv run python -m bench.profile                     # lifecycle at concurrency 16
    uv run python -m bench.profile --database-url postgresql+psycopg://postgres@127.0.0.1/postgres
    uv run python -m bench.profile --workload logs     # CreateLogs, 100 lines a call
    uv run python -m bench.profile --workload tasks --top 80
    uv run python -m bench.profile --workload reads    # GetFlowRun, List, Count, History
    uv run python -m bench.profile --workload http-json   # GetFlowRun, List, lifecycle: Connect
    uv run python -m bench.profile --workload http-watch  # 1,000 Connect JSON watchers

With --database-url (a PostgreSQL server) the server runs on a fresh database made there.
py-spy (`pip install py-spy`, not a project dependency) samples the server process while the
workload runs; the summary lists functions by inclusive share of the samples, so a caller's
share includes its callees. `--keep` saves the collapsed stacks for flame graphs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

from bench import http_edge, watch, workloads
from bench.harness import ON_SERVER_START
from tests.conftest import fresh_postgres_database


def summarize(collapsed: Path, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            # "function (path/to/module.py:line)" -> "function (module.py)"
            name, _, where = frame.partition(" (")
            key = f"{name} ({Path(where.split(':')[0]).name})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    print(f"{total} samples; inclusive shares:")
    for key, n in inclusive.most_common(top):
        print(f"{100 * n / total:6.1f}%  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--workload",
        choices=("lifecycle", "logs", "tasks", "reads", "http-json", "http-proto", "http-watch"),
        default="lifecycle",
    )
    parser.add_argument("--ops", type=int, default=1500, help="runs, task runs or reads")
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--keep", type=Path, help="write the collapsed stacks here")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (else SQLite)")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "stacks.txt"
        spies: list[subprocess.Popen[bytes]] = []

        def attach(pid: int) -> None:
            command = ["py-spy", "record", "--pid", str(pid), "--format", "raw"]
            command += ["--rate", "250", "--output", str(out)]
            spies.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )

        ON_SERVER_START.append(attach)
        with contextlib.ExitStack() as stack:
            url = f"sqlite:///{tmp}/profile.db"
            if args.database_url:
                url = stack.enter_context(fresh_postgres_database(args.database_url))
            profile(args, url)
        for spy in spies:  # the server has stopped, so py-spy writes its output and exits
            spy.wait(timeout=60)
        summarize(out, args.top)


def profile(args: argparse.Namespace, url: str) -> None:
    """Run the workload `args` names against a server on `url`."""
    if args.workload == "lifecycle":
        run = workloads.lifecycle(url, (16,), args.ops)
    elif args.workload == "logs":
        run = workloads.lifecycle(url, (16,), 48, log_batches=args.ops)
    elif args.workload == "tasks":
        run = workloads.task_heavy(url, args.ops)
    elif args.workload == "reads":
        run = workloads.reads(url, 10_000, args.ops, 20)
    elif args.workload == "http-watch":
        # 1,000 Connect JSON watchers of one run, 30 state changes.
        run = watch.main(30, 0, sizes=(1000,), protocols=("connect-json",))
    else:
        protocol = "Connect JSON" if args.workload == "http-json" else "Connect binary"
        run = http_edge.http_edge(url, 10_000, args.ops, args.ops // 3, (protocol,), False)
    for figure in asyncio.run(run) or ():
        print(f"{figure.workload} {figure.case}: {figure.rate:,.0f} {figure.unit}/s")


if __name__ == "__main__":
    grpc.aio.init_grpc_aio()
    main()
