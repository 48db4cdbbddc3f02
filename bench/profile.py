"""Profile the server under a workload with py-spy and print where its time goes.

    uv run python -m bench.profile                 # lifecycle at concurrency 16
    uv run python -m bench.profile --workload get --top 40

py-spy (`pip install py-spy`, not a project dependency) samples the server process while the
workload runs; the summary lists functions by inclusive share of the samples, so a caller's
share includes its callees. The collapsed stacks are kept (`--keep`) for flame graphs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

from bench import workloads
from bench.harness import start_runwire
from runwire.v1 import flow_run_pb2, flow_run_service_pb2, flow_run_service_pb2_grpc, state_pb2


async def _drive(port: int, workload: str, ops: int, concurrency: int) -> None:
    chans = workloads.channels(port)
    stubs = [flow_run_service_pb2_grpc.FlowRunServiceStub(c) for c in chans]
    flow_id = await workloads._flow(chans[0], "bench-profile")
    ids: list[str] = []
    queue = iter(range(ops))

    async def lifecycle(stub: flow_run_service_pb2_grpc.FlowRunServiceStub) -> None:
        run = await stub.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(flow_id=flow_id)
            )
        )
        ids.append(run.flow_run.id)
        for state_type in (state_pb2.STATE_TYPE_RUNNING, state_pb2.STATE_TYPE_COMPLETED):
            await stub.SetFlowRunState(
                flow_run_service_pb2.SetFlowRunStateRequest(
                    flow_run_id=run.flow_run.id, state=state_pb2.State(type=state_type)
                )
            )

    async def get(stub: flow_run_service_pb2_grpc.FlowRunServiceStub) -> None:
        await stub.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=ids[0]))

    if workload == "get":
        await lifecycle(stubs[0])
    op = lifecycle if workload == "lifecycle" else get

    async def worker(n: int) -> None:
        for _ in queue:
            await op(stubs[n % len(stubs)])

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    await workloads.close(chans)


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
    parser.add_argument("--workload", choices=("lifecycle", "get"), default="lifecycle")
    parser.add_argument("--ops", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--keep", type=Path, help="write the collapsed stacks here")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_runwire(f"sqlite:///{tmp}/profile.db")
        out = args.keep or Path(tmp) / "stacks.txt"
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(proc.process.pid), "--format", "raw",
             "--rate", "250", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(_drive(proc.port, args.workload, args.ops, args.concurrency))
        finally:
            spy.send_signal(2)
            spy.wait(timeout=60)
            proc.stop()
        summarize(out, args.top)


if __name__ == "__main__":
    grpc.aio.init_grpc_aio()
    main()
