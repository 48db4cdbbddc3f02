"""ReportTaskRuns over gRPC: task runs made with the reporter's ids and taken through their
states by the same rules as SetTaskRunState, many in one call, safe to send again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import uuid6
from google.protobuf import duration_pb2

from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import orchestration_pb2, task_run_pb2
from runwire.v1 import state_pb2 as ST
from runwire.v1 import task_run_service_pb2 as tpb
from runwire.v1 import watch_pb2 as wpb
from tests.helpers import expect_error, make_flow, make_run, ts
from tests.test_task_runs import running_run, task

ACCEPT = orchestration_pb2.SET_STATE_STATUS_ACCEPT
ABORT = orchestration_pb2.SET_STATE_STATUS_ABORT
INVALID = grpc.StatusCode.INVALID_ARGUMENT
RUNNING, COMPLETED, FAILED = ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_COMPLETED, ST.STATE_TYPE_FAILED


def new_id() -> str:
    return str(uuid6.uuid7())


def report(flow_run_id: str, task_key: str, *states: ST.State, **fields) -> tpb.TaskRunReport:
    lease = fields.pop("lease_duration", None)
    run = task_run_pb2.TaskRun(
        id=fields.pop("id", None) or new_id(), flow_run_id=flow_run_id, task_key=task_key, **fields
    )
    return tpb.TaskRunReport(task_run=run, states=states, lease_duration=lease)


def at(type_: int, when: datetime, **fields) -> ST.State:
    return ST.State(type=type_, timestamp=ts(when), **fields)


async def states_of(task_runs, task_run_id: str) -> list[tuple[str, datetime]]:
    response = await task_runs.ListTaskRunStates(
        tpb.ListTaskRunStatesRequest(task_run_id=task_run_id)
    )
    return [(s.name, s.timestamp.ToDatetime(tzinfo=UTC)) for s in response.states]


async def test_reports_make_runs_with_their_ids_states_and_times(flows, runs, task_runs):
    run = await running_run(flows, runs)
    began = datetime.now(UTC) - timedelta(seconds=5)
    result = ST.ResultReference(serializer="json", inline_value=b"42")
    first = report(
        run.id,
        "extract",
        at(RUNNING, began),
        at(COMPLETED, began + timedelta(seconds=2), result=result),
    )
    second = report(
        run.id,
        "load",
        at(RUNNING, began + timedelta(seconds=3)),
        lease_duration=duration_pb2.Duration(seconds=45),
        task_inputs={
            "rows": task_run_pb2.TaskInputList(
                inputs=[
                    task_run_pb2.TaskInput(
                        input_type=task_run_pb2.TaskInput.INPUT_TYPE_TASK_RUN,
                        task_run_id=first.task_run.id,
                    )
                ]
            )
        },
    )
    answer = await task_runs.ReportTaskRuns(tpb.ReportTaskRunsRequest(reports=[first, second]))
    done, started = answer.results
    assert (done.task_run_id, done.created, done.accepted_count) == (first.task_run.id, True, 2)
    assert done.result.status == ACCEPT and done.result.state.name == "Completed"
    assert done.result.state.result == result
    assert (started.accepted_count, started.result.state.name) == (1, "Running")

    # The states keep the times the reporter saw, so the run's duration is the task's.
    history = await states_of(task_runs, first.task_run.id)
    assert [name for name, _ in history] == ["Pending", "Running", "Completed"]
    assert history[1][1] == began and history[2][1] == began + timedelta(seconds=2)
    got = await task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=first.task_run.id))
    assert got.task_run.total_run_time.ToTimedelta() == timedelta(seconds=2)
    assert got.task_run.start_time.ToDatetime(tzinfo=UTC) == began
    graph = await runs.GetFlowRunGraph(pb.GetFlowRunGraphRequest(flow_run_id=run.id))
    upstream = {node.id: list(node.upstream_dependencies) for node in graph.nodes}
    assert upstream == {first.task_run.id: [], second.task_run.id: [first.task_run.id]}

    # A task run reported open holds a lease, and ends by SetTaskRunState as any other.
    beat = await task_runs.HeartbeatTaskRun(
        tpb.HeartbeatTaskRunRequest(task_run_id=second.task_run.id)
    )
    assert beat.state.type == RUNNING
    lease = beat.lease_expire_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(seconds=40) < lease <= timedelta(seconds=45)
    ended = await task_runs.SetTaskRunState(
        tpb.SetTaskRunStateRequest(task_run_id=second.task_run.id, state=ST.State(type=COMPLETED))
    )
    assert ended.result.status == ACCEPT


async def test_a_report_sent_again_is_answered_without_writing_twice(flows, runs, task_runs):
    run = await running_run(flows, runs)
    request = tpb.ReportTaskRunsRequest(
        reports=[
            report(run.id, "t", ST.State(type=RUNNING), ST.State(type=COMPLETED), dynamic_key=key)
            for key in "abc"
        ]
    )
    first = await task_runs.ReportTaskRuns(request)
    again = await task_runs.ReportTaskRuns(request)
    for made, answered in zip(first.results, again.results, strict=True):
        assert made.created and not answered.created and made.task_run_id == answered.task_run_id
        assert answered.result.status == ACCEPT and answered.result.state == made.result.state
        names = [name for name, _ in await states_of(task_runs, made.task_run_id)]
        assert names == ["Pending", "Running", "Completed"]
    # Calls at once, as a client's retries racing its first try: still one of each, and every
    # call is answered with the run's state.
    other = tpb.ReportTaskRunsRequest(
        reports=[report(run.id, "u", ST.State(type=RUNNING), ST.State(type=COMPLETED))]
    )
    racing = await asyncio.gather(*[task_runs.ReportTaskRuns(other) for _ in range(8)])
    assert sorted(r.results[0].created for r in racing) == [False] * 7 + [True]
    assert {r.results[0].result.state.name for r in racing} == {"Completed"}
    assert {r.results[0].result.status for r in racing} == {ACCEPT}
    # One id sent with different keys at once: one of them is made, the others are refused.
    shared = new_id()
    keys = [
        tpb.ReportTaskRunsRequest(reports=[report(run.id, f"k{i}", id=shared)]) for i in range(8)
    ]
    answers = await asyncio.gather(*[task_runs.ReportTaskRuns(r) for r in keys])
    made = [a.results[0] for a in answers if a.results[0].created]
    assert len(made) == 1
    refused = [a.results[0] for a in answers if not a.results[0].created]
    assert all(r.result.status == ABORT for r in refused)
    assert all("another task run's" in r.result.details.reason for r in refused)


async def test_the_task_rules_decide_each_reported_state(flows, runs, task_runs):
    run = await running_run(flows, runs)
    retried = report(
        run.id,
        "flaky",
        ST.State(type=RUNNING),
        ST.State(type=FAILED, message="boom"),
        ST.State(type=RUNNING),
        empirical_policy=task_run_pb2.TaskRunPolicy(retries=1),
    )
    (answer,) = (
        await task_runs.ReportTaskRuns(tpb.ReportTaskRunsRequest(reports=[retried]))
    ).results
    # The failure is rewritten to AwaitingRetry (a REJECT that writes it), which ends the
    # report: the reporter learns of the retry before it proposes anything else.
    assert answer.accepted_count == 1
    assert answer.result.state.name == "AwaitingRetry" and answer.result.state_written

    # A flow run that is not running refuses its tasks' RUNNING, and the report says why.
    pending = await make_run(runs, (await make_flow(flows)).id)
    (refused,) = (
        await task_runs.ReportTaskRuns(
            tpb.ReportTaskRunsRequest(reports=[report(pending.id, "t", ST.State(type=RUNNING))])
        )
    ).results
    assert refused.created and refused.accepted_count == 0 and refused.result.status == ABORT
    assert refused.result.state.name == "Pending"
    assert "enclosing flow must be running" in refused.result.details.reason


async def test_a_key_or_id_another_run_holds_is_refused(flows, runs, task_runs):
    run = await running_run(flows, runs)
    existing = await task(task_runs, run.id, "extract")
    same_key = report(run.id, "extract", ST.State(type=RUNNING))
    same_id = report(run.id, "other", ST.State(type=RUNNING), id=existing.id)
    answer = await task_runs.ReportTaskRuns(tpb.ReportTaskRunsRequest(reports=[same_key, same_id]))
    key_taken, id_taken = answer.results
    assert key_taken.result.status == ABORT and not key_taken.created
    assert existing.id in key_taken.result.details.reason
    assert (
        id_taken.result.status == ABORT and "another task run's" in id_taken.result.details.reason
    )
    await expect_error(
        task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=same_key.task_run.id)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_times_are_kept_in_order_and_never_ahead_of_the_server(flows, runs, task_runs):
    run = await running_run(flows, runs)
    now = datetime.now(UTC)
    early = report(run.id, "t", at(RUNNING, now + timedelta(hours=1)))
    backwards = report(
        run.id, "u", at(RUNNING, now - timedelta(seconds=1)), at(COMPLETED, now - timedelta(days=1))
    )
    await task_runs.ReportTaskRuns(tpb.ReportTaskRunsRequest(reports=[early, backwards]))
    (_, pending), (_, running) = await states_of(task_runs, early.task_run.id)
    assert pending <= running <= datetime.now(UTC)
    times = [when for _, when in await states_of(task_runs, backwards.task_run.id)]
    assert times == sorted(times) and len(set(times)) == 3


async def test_watchers_see_reported_states(flows, runs, task_runs):
    run = await running_run(flows, runs)
    one = report(run.id, "t", ST.State(type=RUNNING), ST.State(type=COMPLETED))
    await task_runs.ReportTaskRuns(tpb.ReportTaskRunsRequest(reports=[one]))
    await runs.SetFlowRunState(
        pb.SetFlowRunStateRequest(flow_run_id=run.id, state=ST.State(type=COMPLETED))
    )
    story = runs.WatchFlowRun(
        wpb.WatchFlowRunRequest(flow_run_id=run.id, after_cursor=0, include_task_runs=True)
    )
    names = [
        m.task_run_state.state.name
        async for m in story
        if m.WhichOneof("event") == "task_run_state"
    ]
    assert names == ["Pending", "Running", "Completed"]


async def test_bad_reports_are_refused_naming_the_field_and_write_nothing(flows, runs, task_runs):
    run = await running_run(flows, runs)
    good = report(run.id, "good", ST.State(type=RUNNING))

    async def refused(bad: tpb.TaskRunReport, field: str, code=INVALID) -> None:
        request = tpb.ReportTaskRunsRequest(reports=[good, bad])
        await expect_error(task_runs.ReportTaskRuns(request), code, field)

    no_id = report(run.id, "t")
    no_id.task_run.ClearField("id")
    await refused(no_id, "reports[1].task_run.id")
    await refused(report(run.id, "t", id="not-a-uuid"), "reports[1].task_run.id")
    await refused(report(run.id, ""), "reports[1].task_run.task_key")
    await refused(report(run.id, "t", ST.State()), "reports[1].states[0]")
    await refused(report(run.id, "t", *[ST.State(type=RUNNING)] * 11), "reports[1].states")
    await refused(report(new_id(), "t", ST.State(type=RUNNING)), None, grpc.StatusCode.NOT_FOUND)
    await refused(
        report(run.id, "t", at(RUNNING, datetime(1999, 12, 31, tzinfo=UTC))),
        "reports[1].states[0].timestamp",
    )
    await refused(
        report(run.id, "t", lease_duration=duration_pb2.Duration(seconds=0)),
        "reports[1].lease_duration",
    )
    too_many = tpb.ReportTaskRunsRequest(reports=[report(run.id, "t")] * 1001)
    await expect_error(task_runs.ReportTaskRuns(too_many), INVALID, "reports")
    await expect_error(
        task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=good.task_run.id)),
        grpc.StatusCode.NOT_FOUND,
    )
