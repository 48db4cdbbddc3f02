"""Checks a server's health every 10 ms until its standard input closes, then prints the
latencies (seconds, JSON) and the number of failed checks: a process of its own, so that what
it measures is the server, not a client sharing its interpreter.

    python -m tests.health_probe PORT
"""

from __future__ import annotations

import json
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(port: int) -> None:
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    latencies: list[float] = []
    failures = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        check(health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=True)
        print("ready", flush=True)
        while not done.wait(0.01):
            started = time.perf_counter()
            try:
                check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.RpcError:
                failures += 1
            latencies.append(time.perf_counter() - started)
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
