"""Instructions per operation of the server's own work, counted by valgrind: a figure this shared
VM's noise does not move.

    uv run python -m bench.instructions            # every workload below
    uv run python -m bench.instructions --ops 200  # fewer, faster
    uv run python -m bench.instructions --only list,logs
    uv run python -m bench.instructions --only read,list --cold   # no message kept from before

Timings on this VM vary by 2x from one hour to the next, and two quick runs minutes apart differ
by 15%; a change worth a few percent cannot be seen in them. valgrind's callgrind counts the
instructions a process executes, the same for the same code and inputs whatever else the machine
is doing. This runs the services in-process (no gRPC: that part is the same for every
design) on a temporary SQLite file: lifecycles (create, RUNNING, COMPLETED) in transactions of
8 as group commit makes them; reads by id as GetFlowRun makes them; pages of 50 as ListFlowRuns
(COMPLETED runs by start time), ListTaskRuns (a run's task runs by expected start) and ListLogs
(a run's lines) make them; and CreateLogs batches of 100 lines from their encoded request. Each
answer is built as its handler builds it, and encoded. Each is counted at two sizes and the
difference divided, so start-up, seeding and schema creation drop out. It takes a few minutes
(valgrind runs Python about 50x slower). Kernel time (the `fsync` of each commit) is not
counted.
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
SEEDED = 300  # runs, a run's task runs and its log lines, for the page workloads
LOG_LINES = 100  # lines a CreateLogs batch carries
# workload: what one operation is
WORKLOADS = {
    "lifecycle": "lifecycle",
    "read": "GetFlowRun read",
    "list": "ListFlowRuns page of 50",
    "tasks": "ListTaskRuns page of 50",
    "log-list": "ListLogs page of 50",
    "logs": f"CreateLogs batch of {LOG_LINES} lines",
}


def inner(workload: str, ops: int, cold: bool) -> None:
    """Run `ops` operations of one workload in this process (under valgrind); `cold`: every
    message is built anew, as no run's message were kept from an earlier read."""
    from bench import workloads
    from runwire.v1 import filters_pb2 as f
    from runwire.v1 import (
        flow_run_service_pb2,
        log_pb2,
        log_service_pb2,
        state_pb2,
        task_run_service_pb2,
    )
    from runwire_server import clock, convert
    from runwire_server.api import task_runs as task_run_api
    from runwire_server.convert.events import EventCodec
    from runwire_server.events.outbox import Outbox
    from runwire_server.ids import new_id
    from runwire_server.orchestration.context import Settings
    from runwire_server.orchestration.states import State, StateType
    from runwire_server.pages import PageRequest, PageTokens
    from runwire_server.services.flow_runs import FlowRunService, FlowRunValues
    from runwire_server.services.logs import LogService
    from runwire_server.services.states import Proposal, pending
    from runwire_server.services.task_runs import TaskRunService
    from runwire_server.storage import models as m
    from runwire_server.storage.database import Database

    if cold:
        convert.keep_run_messages(0)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/instructions.db"
        parent = None
        if workload in ("list", "tasks", "log-list", "logs"):
            workloads.seed_runs(url, SEEDED)
            parent = uuid.UUID(workloads.seed_children(url, SEEDED))
        db = Database(url)
        db.add_commit_hooks(Outbox(EventCodec(), lambda events: None))  # as the server does
        db.prepare_schema()
        flow_id = new_id()
        at = clock.now()
        db.run_sync(lambda s: s.add(m.Flow(id=flow_id, name="bench", created=at, updated=at)))
        tokens = PageTokens(b"bench")
        settings = Settings()
        runs = FlowRunService(db, tokens, settings)
        tasks = TaskRunService(db, tokens, settings)
        logs = LogService(db, tokens)

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

        def page() -> PageRequest:
            return PageRequest(50, 0, "", lambda: "bench")

        completed = f.FlowRunCriteria(
            flow_runs=f.FlowRunFilter(
                state=f.StateFilter(
                    type=f.StateTypeFilter(
                        any_of=f.StateTypeList(values=[state_pb2.STATE_TYPE_COMPLETED])
                    )
                )
            )
        )
        of_parent = f.StringFilter(any_of=f.StringList(values=[str(parent)]))
        of_run = task_run_service_pb2.TaskRunCriteria(
            task_runs=f.TaskRunFilter(flow_run_id=of_parent)
        )
        lines = log_service_pb2.CreateLogsRequest(
            logs=[
                log_pb2.Log(flow_run_id=str(parent), name="bench", level=20, message=f"line {n}")
                for n in range(LOG_LINES)
            ]
        ).SerializeToString()

        async def one_page() -> None:
            if workload == "list":
                found, cursor = await runs.list_page(
                    completed, f.FLOW_RUN_SORT_START_TIME_DESC, page()
                )
                now = clock.now()
                flow_run_service_pb2.ListFlowRunsResponse(
                    flow_runs=[convert.flow_run_to_proto(r, now) for r in found.rows],
                    next_page_token=found.next_token,
                    watch_cursor=cursor,
                ).SerializeToString()
            elif workload == "tasks":
                listed = await tasks.list_page(
                    of_run, f.TASK_RUN_SORT_EXPECTED_START_TIME_DESC, page()
                )
                now = clock.now()
                task_run_service_pb2.ListTaskRunsResponse(
                    task_runs=[convert.task_run_to_proto(r, now) for r in listed.rows],
                    next_page_token=listed.next_token,
                ).SerializeToString()
            elif workload == "log-list":
                found_logs = await logs.list_page(
                    f.LogFilter(flow_run_id=of_parent), f.LOG_SORT_TIMESTAMP_ASC, page()
                )
                log_service_pb2.ListLogsResponse(
                    logs=[convert.log_to_proto(r) for r in found_logs.rows],
                    next_page_token=found_logs.next_token,
                ).SerializeToString()
            else:
                request = log_service_pb2.CreateLogsRequest.FromString(lines)
                batch = task_run_api.log_batch(request.logs, 1_000_000)
                created = await logs.create(batch)
                log_service_pb2.CreateLogsResponse(created_count=created).SerializeToString()

        async def run() -> None:
            if workload == "lifecycle":
                for _ in range(ops // BATCH):
                    await lifecycles(BATCH)
                return
            if workload == "read":
                ids = await lifecycles(BATCH)
                for i in range(ops):
                    convert.flow_run_to_proto(await runs.get(ids[i % len(ids)]), clock.now())
                return
            for _ in range(ops):
                await one_page()

        asyncio.run(run())
        db.close()


def count(workload: str, ops: int, cold: bool) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", "bench.instructions", "--inner", workload, str(ops)]
    command += ["--cold"] if cold else []
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        sys.exit(f"valgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=400, help="operations at the larger size")
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help=f"a subset of {','.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="build every run's message anew (RUNWIRE_KEPT_RUN_MESSAGES=0): reads of runs "
        "not read before",
    )
    parser.add_argument("--inner", nargs=2, metavar=("WORKLOAD", "OPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner[0], int(args.inner[1]), args.cold)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    if unknown := set(only) - set(WORKLOADS):
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    small = max(BATCH, args.ops // 5 // BATCH * BATCH)
    large = max(small + BATCH, args.ops // BATCH * BATCH)
    for workload in only:
        # Pages and batches cost tens of reads by id: a tenth as many keep the run short.
        low, high = (small, large) if workload in ("lifecycle", "read") else (2, 2 + args.ops // 40)
        per = (count(workload, high, args.cold) - count(workload, low, args.cold)) / (high - low)
        kept = ", every message built anew" if args.cold else ""
        print(f"{per:,.0f} instructions per {WORKLOADS[workload]}{kept}", flush=True)


if __name__ == "__main__":
    main()
