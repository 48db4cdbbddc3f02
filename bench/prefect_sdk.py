"""The flows of bench/sdk.py in Prefect, against Prefect's own server on a SQLite file, for the
side-by-side figures of `python -m bench.sdk --prefect PYTHON`.

It runs under an interpreter that has Prefect installed (not this workspace's), so it imports
nothing of Runwire, and prints one JSON object: milliseconds of overhead a task for each case.

    uv venv /tmp/prefect && VIRTUAL_ENV=/tmp/prefect uv pip install prefect==3.9.1
    /tmp/prefect/bin/python bench/prefect_sdk.py --tasks 200
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: str) -> tuple[subprocess.Popen[bytes], str]:
    """`prefect server start` on a SQLite file in `home`, once it answers its health check."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--no-services"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("Prefect's server did not start within 120 s")


def measure(tasks: int, repeat: int) -> dict[str, Any]:
    from prefect import flow, task

    @task
    def echo(x: int) -> int:
        return x

    @flow(name="bench-called")
    def called(n: int) -> int:
        return sum(echo(i) for i in range(n))

    @flow(name="bench-submitted")
    def submitted(n: int) -> int:
        futures = [echo.submit(i) for i in range(n)]
        return sum(f.result() for f in futures)

    @flow(name="bench-mapped")
    def mapped(n: int) -> int:
        return sum(f.result() for f in echo.map(list(range(n))))

    @flow(name="bench-empty")
    def empty(n: int) -> int:
        return n

    def timed(fn: Any, n: int) -> float:
        started = time.perf_counter()
        fn(n)
        return time.perf_counter() - started

    timed(called, 10)  # warm up: the flows and the client's connections
    # A flow alone takes about a second, and varies by a tenth of that: its median is taken.
    base = statistics.median(timed(empty, 0) for _ in range(5))
    out: dict[str, Any] = {"tasks": tasks, "flow_without_tasks_s": round(base, 4)}
    for case, fn in (("called", called), ("submitted", submitted), ("mapped", mapped)):
        walls = [timed(fn, tasks) for _ in range(repeat)]
        out[case] = round((statistics.median(walls) - base) * 1000 / tasks, 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (the median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        server, url = start_server(home)
        try:
            # Before Prefect is imported, which reads its settings then.
            os.environ.update(
                {"PREFECT_HOME": home, "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "ERROR"}
            )
            import prefect

            figures = measure(args.tasks, args.repeat)
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps({"prefect_version": prefect.__version__, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
