"""GetFlowRunHistory reads whole ten-minute slots from a roll-up that database triggers keep, and
the runs of ragged edges and of the present slot one by one. These tests check that both ways
give the same answer, and the answer every run's own state and expected start give, across
slot boundaries, the present moment, 1970, state changes, deletions and flow criteria."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from runwire.v1 import filters_pb2 as f
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import flow_service_pb2 as fpb
from runwire.v1 import state_pb2 as ST
from tests.helpers import history, make_flow, make_run, ts

SLOT = timedelta(minutes=10)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A criterion on the runs themselves that every run meets: it makes the server read run by run.
EVERY_RUN = f.FlowRunFilter(
    id=f.StringFilter(not_any_of=f.StringList(values=[str(uuid.UUID(int=0))]))
)

Key = tuple[int, str]
Sums = tuple[int, timedelta, timedelta]  # runs, sum of estimated run time, sum of lateness


def flows_named(*names: str) -> f.FlowRunCriteria:
    return f.FlowRunCriteria(
        flows=f.FlowFilter(name=f.StringFilter(any_of=f.StringList(values=list(names))))
    )


def run_by_run(criteria: f.FlowRunCriteria) -> f.FlowRunCriteria:
    out = f.FlowRunCriteria()
    out.CopyFrom(criteria)
    out.flow_runs.CopyFrom(EVERY_RUN)
    return out


async def both_ways(runs, start, end, step, criteria) -> tuple[dict[Key, Sums], timedelta]:
    """The roll-up's answer, after checking it against reading every run. Sums that grow with
    the clock may differ by how far the clock moved between the two calls, per run."""
    began = time.monotonic()
    from_slots = await history(runs, start, end, step, criteria)
    read = await history(runs, start, end, step, run_by_run(criteria))
    drift = timedelta(seconds=time.monotonic() - began)
    assert set(from_slots) == set(read)
    for key, (count, run_time, lateness) in read.items():
        got_count, got_run_time, got_lateness = from_slots[key]
        assert got_count == count, key
        assert abs(got_run_time - run_time) <= drift * count, (key, got_run_time, run_time)
        assert abs(got_lateness - lateness) <= drift * count, (key, got_lateness, lateness)
    return from_slots, drift


async def scheduled(runs, flow_id: str, when: datetime) -> str:
    run = await make_run(
        runs,
        flow_id,
        state=ST.State(
            type=ST.STATE_TYPE_SCHEDULED, state_details=ST.StateDetails(scheduled_time=ts(when))
        ),
    )
    return run.id


async def drive(runs, run_id: str, *types: int) -> None:
    # Forced: runs scheduled in the future would otherwise be told to wait.
    for state_type in types:
        response = await runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=run_id, state=ST.State(type=state_type), force=True
            )
        )
        assert response.result.status == 1, response  # ACCEPT


FATES = (
    (),  # still scheduled: waiting, and late once its time has passed
    (ST.STATE_TYPE_RUNNING,),
    (ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_COMPLETED),
    (ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_FAILED),
    (ST.STATE_TYPE_CANCELLED,),
)
NAMES = {(): "Scheduled", (ST.STATE_TYPE_CANCELLED,): "Cancelled"}
NAMES.update({fate: ST.StateType.Name(fate[-1])[11:].title() for fate in FATES[1:4]})


async def test_history_from_slots_equals_every_runs_own_figures(flows, runs):
    flow_a, flow_b = await make_flow(flows), await make_flow(flows)
    now = datetime.now(UTC)
    anchor = EPOCH + (now - EPOCH) // SLOT * SLOT  # the start of the present slot
    offsets = [
        -timedelta(hours=3),
        -timedelta(minutes=150, microseconds=1),
        -timedelta(minutes=61),
        -SLOT,
        -timedelta(microseconds=1),
        timedelta(0),
        timedelta(minutes=5),
        timedelta(hours=1),
        timedelta(hours=1, microseconds=1),
        timedelta(hours=2) - timedelta(microseconds=1),
        # In the slots cut by the ragged window's start and end, outside the window: their
        # slots count whole, and these runs must be taken back out.
        -timedelta(hours=3, minutes=9),
        timedelta(hours=2, minutes=8),
    ]
    rng = random.Random(7)
    offsets += [timedelta(seconds=rng.uniform(-3 * 3600, 2 * 3600)) for _ in range(20)]
    # flow name -> (expected start, final state name) of each run still stored
    stored: dict[str, list[tuple[datetime, str]]] = {flow_a.name: [], flow_b.name: []}
    for n, offset in enumerate(offsets):
        for flow in (flow_a, flow_b):
            when = anchor + offset
            run_id = await scheduled(runs, flow.id, when)
            fate = FATES[(n + (flow is flow_b)) % len(FATES)]
            await drive(runs, run_id, *fate)
            stored[flow.name].append((when, NAMES[fate]))
    deleted = await scheduled(runs, flow_a.id, anchor - timedelta(minutes=30))
    await drive(runs, deleted, ST.STATE_TYPE_RUNNING)
    await runs.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id=deleted))

    windows = [
        # ragged: no interval edge on a slot boundary
        (
            anchor - timedelta(hours=3, minutes=7, seconds=13),
            anchor + timedelta(hours=2, minutes=6),
            timedelta(minutes=17),
        ),
        (anchor - timedelta(hours=3), anchor + timedelta(hours=2), timedelta(hours=1)),
        (anchor - timedelta(hours=3), anchor + timedelta(hours=2), SLOT),
        (anchor - timedelta(hours=4), anchor + timedelta(hours=3), timedelta(hours=7)),
    ]
    for start, end, step in windows:
        got, _ = await both_ways(runs, start, end, step, flows_named(flow_a.name))
        expected: dict[Key, int] = {}
        for when, name in stored[flow_a.name]:
            if start <= when < end:
                key = ((when - start) // step, name)
                expected[key] = expected.get(key, 0) + 1
        assert {key: sums[0] for key, sums in got.items()} == expected, (start, step)
        await both_ways(runs, start, end, step, flows_named(flow_a.name, flow_b.name))
        await both_ways(runs, start, end, step, f.FlowRunCriteria())

    # Deleting a flow deletes its runs, and the roll-up forgets them.
    await flows.DeleteFlow(fpb.DeleteFlowRequest(flow_id=flow_b.id))
    start, end, step = windows[0]
    assert await history(runs, start, end, step, flows_named(flow_b.name)) == {}
    await both_ways(runs, start, end, step, f.FlowRunCriteria())


async def test_history_from_slots_is_exact_for_finished_runs_around_1970(flows, runs):
    """Before 1970 a slot number is negative; SQL's division truncates toward zero, the roll-up
    must floor. Finished runs' sums do not grow with the clock, so both ways agree exactly."""
    flow = await make_flow(flows)
    times = [
        EPOCH - timedelta(minutes=20),  # a slot boundary before 1970
        EPOCH - timedelta(minutes=10, microseconds=1),
        EPOCH - timedelta(microseconds=1),
        EPOCH,
        EPOCH + timedelta(minutes=3),
        EPOCH + SLOT,
    ]
    for when in times:
        run_id = await scheduled(runs, flow.id, when)
        await drive(runs, run_id, ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_COMPLETED)
    only = f.FlowRunCriteria(
        flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
    )
    for step in (SLOT, timedelta(minutes=7), timedelta(hours=1)):
        start, end = EPOCH - timedelta(hours=1), EPOCH + timedelta(hours=1)
        from_slots = await history(runs, start, end, step, only)
        assert from_slots == await history(runs, start, end, step, run_by_run(only))
        expected: dict[Key, int] = {}
        for when in times:
            key = ((when - start) // step, "Completed")
            expected[key] = expected.get(key, 0) + 1
        assert {key: sums[0] for key, sums in from_slots.items()} == expected, step
