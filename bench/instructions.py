"""Instructions per operation of the server's own work, counted by valgrind: a figure this shared
VM's noise does not move.

    uv run python -m bench.instructions            # lifecycles and reads by id
    uv run python -m bench.instructions --ops 200  # fewer, faster

Timings on this VM vary by 2x from one hour to the next, and two quick runs minutes apart differ
by 15%; a change worth a few percent cannot be seen in them. valgrind's callgrind counts the
instructions a process executes, the same for the same code and inputs whatever else the machine
is doing. This runs the services in-process (no gRPC: that part is the same for every
design) on a temporary SQLite file: lifecycles (create, RUNNING, COMPLETED) in transactions of
8 as group commit makes them, and reads by id as GetFlowRun makes them, each converted to its
response message. Each is counted at two sizes and the difference divided, so start-up and
schema creation drop out. It takes a few minutes (valgrind runs Python about 50x slower).
Kernel time (the `fsync` of each commit) is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

BATCH = 8  # writes per transaction, about what group commit gathers at concurrency 16


def inner(workload: str, ops: int) -> None:
    """Run `ops` operations of one workload in this process (under valgrind)."""
    from runwire_server import clock, convert
    from runwire_server.convert.events import EventCodec
    from runwire_server.events.outbox import Outbox
    from runwire_server.ids import new_id
    from runwire_server.orchestration.context import Settings
    from runwire_server.orchestration.states import State, StateType
    from runwire_server.pages import PageTokens
    from runwire_server.services.flow_runs import FlowRunService, FlowRunValues
    from runwire_server.services.states import Proposal, pending
    from runwire_server.storage import models as m
    from runwire_server.storage.database import Database

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/instructions.db")
        db.add_commit_hooks(Outbox(EventCodec(), lambda events: None))  # as the server does
        db.prepare_schema()
        flow_id = new_id()
        at = clock.now()
        db.run_sync(lambda s: s.add(m.Flow(id=flow_id, name="bench", created=at, updated=at)))
        runs = FlowRunService(db, PageTokens(b"bench"), Settings())

        def to(state_type: StateType, name: str) -> Proposal:
            return lambda when: State(type=state_type, name=name, timestamp=when)

        proposals = (to(StateType.RUNNING, "Running"), to(StateType.COMPLETED, "Completed"))

        async def create() -> uuid.UUID:
            run, _ = await runs.create(FlowRunValues(flow_id=flow_id), pending)
            convert.flow_run_to_proto(run, clock.now())
            return run.id  # type: ignore[no-any-return]

        async def change(run_id: uuid.UUID, proposal: Proposal) -> None:
            convert.outcome_to_proto(await runs.set_state(run_id, proposal, force=False))

        async def lifecycles(n: int) -> list[uuid.UUID]:
            """n lifecycles, written as n concurrent calls would be: group commit puts the n
            creates in one transaction, then the n RUNNING changes, then the n COMPLETED."""
            ids = await asyncio.gather(*(create() for _ in range(n)))
            for proposal in proposals:
                await asyncio.gather(*(change(run_id, proposal) for run_id in ids))
            return ids

        async def run() -> None:
            if workload == "lifecycle":
                for _ in range(ops // BATCH):
                    await lifecycles(BATCH)
                return
            ids = await lifecycles(BATCH)
            for i in range(ops):
                convert.flow_run_to_proto(await runs.get(ids[i % len(ids)]), clock.now())

        asyncio.run(run())
        db.close()


def count(workload: str, ops: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", "bench.instructions", "--inner", workload, str(ops)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        sys.exit(f"valgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=400, help="operations at the larger size")
    parser.add_argument("--inner", nargs=2, metavar=("WORKLOAD", "OPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner[0], int(args.inner[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    small = max(BATCH, args.ops // 5 // BATCH * BATCH)
    large = max(small + BATCH, args.ops // BATCH * BATCH)
    for workload, unit in (("lifecycle", "lifecycle"), ("read", "GetFlowRun read")):
        per = (count(workload, large) - count(workload, small)) / (large - small)
        print(f"{per:,.0f} instructions per {unit}", flush=True)


if __name__ == "__main__":
    main()
