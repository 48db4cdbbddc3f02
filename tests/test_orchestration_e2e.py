"""Orchestration over gRPC: every status, force, resume, races, retries, caches and limits."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2

from runwire.v1 import concurrency_limit_service_pb2 as cpb
from runwire.v1 import concurrency_limit_service_pb2_grpc as cgrpc
from runwire.v1 import deployment_pb2, flow_run_pb2, flow_run_service_pb2_grpc, task_run_pb2
from runwire.v1 import deployment_service_pb2 as dpb
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import orchestration_pb2 as opb
from runwire.v1 import state_pb2 as ST
from runwire.v1 import task_run_service_pb2 as tpb
from tests.helpers import expect_error, make_flow, make_run, ts, unique

ACCEPT, REJECT = opb.SET_STATE_STATUS_ACCEPT, opb.SET_STATE_STATUS_REJECT
ABORT, WAIT = opb.SET_STATE_STATUS_ABORT, opb.SET_STATE_STATUS_WAIT


def state(type_: int, name: str = "", **details) -> ST.State:
    result = details.pop("result", None)
    return ST.State(type=type_, name=name, state_details=ST.StateDetails(**details), result=result)


async def propose(
    runs, run_id: str, proposed: ST.State, force: bool = False
) -> opb.OrchestrationResult:
    response = await runs.SetFlowRunState(
        pb.SetFlowRunStateRequest(flow_run_id=run_id, state=proposed, force=force)
    )
    return response.result


async def history(runs, run_id: str) -> list[str]:
    response = await runs.ListFlowRunStates(pb.ListFlowRunStatesRequest(flow_run_id=run_id))
    return [s.name for s in response.states]


async def new_run(flows, runs, **fields) -> flow_run_pb2.FlowRun:
    return await make_run(runs, (await make_flow(flows)).id, **fields)


async def test_accept_and_the_written_state(flows, runs):
    run = await new_run(flows, runs)
    result = await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    assert result.status == ACCEPT and result.state_written
    assert result.state.name == "Running" and result.details.reason == ""


async def test_reject_without_a_replacement_writes_nothing(flows, runs):
    run = await new_run(flows, runs)
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    await propose(runs, run.id, state(ST.STATE_TYPE_CANCELLING))
    result = await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    assert result.status == REJECT and not result.state_written
    assert result.state.type == ST.STATE_TYPE_CANCELLING  # the current state comes back
    assert result.details.reason == (
        "Cannot transition flows that are cancelling to a state other than Cancelled."
    )
    assert await history(runs, run.id) == ["Pending", "Running", "Cancelling"]


async def test_abort_on_a_second_claim(flows, runs):
    run = await new_run(flows, runs)
    result = await propose(runs, run.id, state(ST.STATE_TYPE_PENDING))
    assert result.status == ABORT and not result.state_written
    assert "cannot transition to a PENDING state" in result.details.reason


async def test_wait_until_the_scheduled_time(flows, runs):
    later = datetime.now(UTC) + timedelta(minutes=10)
    run = await new_run(flows, runs, state=state(ST.STATE_TYPE_SCHEDULED, scheduled_time=ts(later)))
    result = await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    assert result.status == WAIT and not result.state_written
    assert 590 <= result.details.delay.seconds <= 600
    assert result.details.reason == "Scheduled time is in the future"
    # force skips the rules...
    forced = await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING), force=True)
    assert forced.status == ACCEPT


async def test_force_never_loses_a_persisted_result(flows, runs):
    run = await new_run(flows, runs)
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    result_ref = ST.ResultReference(serializer="json", inline_value=b"1")
    await propose(runs, run.id, state(ST.STATE_TYPE_COMPLETED, result=result_ref))
    # ...but not the one that protects a persisted result.
    refused = await propose(runs, run.id, state(ST.STATE_TYPE_COMPLETED), force=True)
    assert refused.status == REJECT and not refused.state_written
    assert refused.state.result.inline_value == b"1"
    rerun = await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    assert rerun.status == REJECT and rerun.details.reason == "Run is already COMPLETED."


async def test_duplicate_transition_ids_make_retries_safe(flows, runs):
    run = await new_run(flows, runs)
    proposal = state(ST.STATE_TYPE_RUNNING, transition_id="attempt-1")
    first = await propose(runs, run.id, proposal)
    again = await propose(runs, run.id, proposal)
    assert first.status == ACCEPT
    assert again.status == REJECT and not again.state_written
    assert again.state.id == first.state.id


async def test_retries_end_to_end(flows, runs):
    run = await new_run(flows, runs, empirical_policy=flow_run_pb2.FlowRunPolicy(retries=2))
    for attempt in range(2):
        assert (await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))).status == ACCEPT
        failed = await propose(runs, run.id, state(ST.STATE_TYPE_FAILED))
        assert failed.status == REJECT and failed.state_written, attempt
        assert failed.state.name == "AwaitingRetry" and failed.details.reason == "Retrying"
    assert (await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))).status == ACCEPT
    assert (await propose(runs, run.id, state(ST.STATE_TYPE_COMPLETED))).status == ACCEPT
    got = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))).flow_run
    assert got.run_count == 3 and got.state.type == ST.STATE_TYPE_COMPLETED
    assert await history(runs, run.id) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Running",
        "AwaitingRetry",
        "Running",
        "Completed",
    ]
    # A third failure would have been final:
    other = await new_run(flows, runs, empirical_policy=flow_run_pb2.FlowRunPolicy(retries=0))
    await propose(runs, other.id, state(ST.STATE_TYPE_RUNNING))
    assert (await propose(runs, other.id, state(ST.STATE_TYPE_FAILED))).status == ACCEPT


async def test_resume_a_paused_run(flows, runs):
    run = await new_run(flows, runs)
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    later = datetime.now(UTC) + timedelta(hours=1)
    paused = await propose(
        runs, run.id, state(ST.STATE_TYPE_PAUSED, pause_key="p1", pause_timeout=ts(later))
    )
    assert paused.status == ACCEPT
    # The same pause does not fire twice.
    again = await propose(runs, run.id, state(ST.STATE_TYPE_PAUSED, pause_key="p1"))
    assert again.status == REJECT
    resumed = (await runs.ResumeFlowRun(pb.ResumeFlowRunRequest(flow_run_id=run.id))).result
    assert resumed.status == ACCEPT and resumed.state.type == ST.STATE_TYPE_RUNNING
    got = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))).flow_run
    assert got.run_count == 1  # resuming continues the same run
    assert list(got.empirical_policy.pause_keys) == ["p1"] and not got.empirical_policy.resuming
    not_paused = (await runs.ResumeFlowRun(pb.ResumeFlowRunRequest(flow_run_id=run.id))).result
    assert not_paused.status == ABORT
    assert not_paused.details.reason == "Cannot resume a flow run that is not paused."


async def test_resume_a_suspended_run_reschedules_it(flows, runs, deployments):
    flow = await make_flow(flows)
    dep = (
        await deployments.CreateDeployment(
            dpb.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(name=unique("d"), flow_id=flow.id)
            )
        )
    ).deployment
    run = await make_run(runs, flow.id, deployment_id=dep.id)
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    suspended = await propose(
        runs, run.id, state(ST.STATE_TYPE_PAUSED, "Suspended", pause_reschedule=True)
    )
    assert suspended.status == ACCEPT
    resumed = (await runs.ResumeFlowRun(pb.ResumeFlowRunRequest(flow_run_id=run.id))).result
    assert resumed.status == ACCEPT
    assert (resumed.state.type, resumed.state.name) == (ST.STATE_TYPE_SCHEDULED, "Resuming")


async def test_resume_timed_out_fails_the_run(flows, runs):
    run = await new_run(flows, runs)
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    past = datetime.now(UTC) - timedelta(seconds=1)
    await propose(runs, run.id, state(ST.STATE_TYPE_PAUSED, pause_timeout=ts(past)))
    resumed = (await runs.ResumeFlowRun(pb.ResumeFlowRunRequest(flow_run_id=run.id))).result
    assert resumed.status == REJECT and resumed.state.type == ST.STATE_TYPE_FAILED
    assert resumed.details.reason == "The flow run pause has timed out and can no longer resume."


async def test_resume_errors(runs):
    await expect_error(
        runs.ResumeFlowRun(pb.ResumeFlowRunRequest(flow_run_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        runs.ResumeFlowRun(pb.ResumeFlowRunRequest(flow_run_id="x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "flow_run_id",
    )


async def test_twenty_clients_race_to_claim_one_run(flows, runs, server, server_process):
    run = await new_run(flows, runs, state=state(ST.STATE_TYPE_SCHEDULED))
    stubs = [runs]
    channel = None
    if server.app.db.is_postgresql:
        # Half the claims go through a second server process (a replica) on the same database;
        # a SQLite file serves one server process at a time.
        port = server_process(server.app.db.url.render_as_string(hide_password=False))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stubs.append(flow_run_service_pb2_grpc.FlowRunServiceStub(channel))
    try:
        results = await asyncio.gather(
            *[
                propose(stubs[i % len(stubs)], run.id, state(ST.STATE_TYPE_PENDING))
                for i in range(20)
            ]
        )
    finally:
        if channel is not None:
            await channel.close()
    statuses = [r.status for r in results]
    assert statuses.count(ACCEPT) == 1
    assert statuses.count(ABORT) == 19
    assert await history(runs, run.id) == ["Scheduled", "Pending"]


async def test_deployment_concurrency_limit(flows, runs, deployments):
    flow = await make_flow(flows)

    async def deployment(**fields):
        return (
            await deployments.CreateDeployment(
                dpb.CreateDeploymentRequest(
                    deployment=deployment_pb2.Deployment(
                        name=unique("d"), flow_id=flow.id, **fields
                    )
                )
            )
        ).deployment

    limited = await deployment(concurrency_limit=1)
    assert limited.concurrency_limit == 1
    first = await make_run(
        runs, flow.id, deployment_id=limited.id, state=state(ST.STATE_TYPE_SCHEDULED)
    )
    second = await make_run(
        runs, flow.id, deployment_id=limited.id, state=state(ST.STATE_TYPE_SCHEDULED)
    )
    assert (await propose(runs, first.id, state(ST.STATE_TYPE_PENDING))).status == ACCEPT
    queued = await propose(runs, second.id, state(ST.STATE_TYPE_PENDING))
    assert queued.status == REJECT and queued.state.name == "AwaitingConcurrencySlot"
    assert queued.details.reason == "Deployment concurrency limit reached."
    await propose(runs, first.id, state(ST.STATE_TYPE_RUNNING))
    await propose(runs, first.id, state(ST.STATE_TYPE_COMPLETED))  # frees the slot
    assert (await propose(runs, second.id, state(ST.STATE_TYPE_PENDING))).status == ACCEPT

    cancel_new = await deployment(
        concurrency_limit=1, collision_strategy=deployment_pb2.COLLISION_STRATEGY_CANCEL_NEW
    )
    a = await make_run(
        runs, flow.id, deployment_id=cancel_new.id, state=state(ST.STATE_TYPE_SCHEDULED)
    )
    b = await make_run(
        runs, flow.id, deployment_id=cancel_new.id, state=state(ST.STATE_TYPE_SCHEDULED)
    )
    assert (await propose(runs, a.id, state(ST.STATE_TYPE_PENDING))).status == ACCEPT
    cancelled = await propose(runs, b.id, state(ST.STATE_TYPE_PENDING))
    assert cancelled.status == REJECT and cancelled.state.type == ST.STATE_TYPE_CANCELLED

    await expect_error(
        deployment(concurrency_limit=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "deployment.concurrency_limit",
    )


async def test_a_run_awaiting_retry_frees_its_deployment_slot(flows, runs, deployments):
    """A failure rewritten to AwaitingRetry frees the slot; cancelling the run from there
    leaves the deployment free (an earlier rule kept the slot and blocked it for good)."""
    flow = await make_flow(flows)
    limited = (
        await deployments.CreateDeployment(
            dpb.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(
                    name=unique("d"), flow_id=flow.id, concurrency_limit=1
                )
            )
        )
    ).deployment
    retrying = flow_run_pb2.FlowRunPolicy(retries=1, retry_delay=duration_pb2.Duration(seconds=600))

    async def scheduled_run(**fields):
        return await make_run(
            runs,
            flow.id,
            deployment_id=limited.id,
            state=state(ST.STATE_TYPE_SCHEDULED),
            **fields,
        )

    first = await scheduled_run(empirical_policy=retrying)
    assert (await propose(runs, first.id, state(ST.STATE_TYPE_PENDING))).status == ACCEPT
    assert (await propose(runs, first.id, state(ST.STATE_TYPE_RUNNING))).status == ACCEPT
    failed = await propose(runs, first.id, state(ST.STATE_TYPE_FAILED))
    assert failed.status == REJECT and failed.state.name == "AwaitingRetry"

    second = await scheduled_run()
    assert (await propose(runs, second.id, state(ST.STATE_TYPE_PENDING))).status == ACCEPT
    await propose(runs, second.id, state(ST.STATE_TYPE_RUNNING))
    await propose(runs, second.id, state(ST.STATE_TYPE_COMPLETED))

    cancelled = await propose(runs, first.id, state(ST.STATE_TYPE_CANCELLING))
    assert cancelled.state.type == ST.STATE_TYPE_CANCELLED
    third = await scheduled_run()
    assert (await propose(runs, third.id, state(ST.STATE_TYPE_PENDING))).status == ACCEPT


async def running_flow_run(flows, runs) -> flow_run_pb2.FlowRun:
    run = await new_run(flows, runs)
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    return run


async def make_task(task_runs, flow_run_id: str, **fields) -> task_run_pb2.TaskRun:
    fields.setdefault("task_key", unique("task"))
    response = await task_runs.CreateTaskRun(
        tpb.CreateTaskRunRequest(task_run=task_run_pb2.TaskRun(flow_run_id=flow_run_id, **fields))
    )
    return response.task_run


async def propose_task(task_runs, task_run_id: str, proposed: ST.State, force: bool = False):
    response = await task_runs.SetTaskRunState(
        tpb.SetTaskRunStateRequest(task_run_id=task_run_id, state=proposed, force=force)
    )
    return response.result


async def test_task_runs_are_created_once(flows, runs, task_runs):
    run = await running_flow_run(flows, runs)
    request = tpb.CreateTaskRunRequest(
        task_run=task_run_pb2.TaskRun(flow_run_id=run.id, task_key="say_hello-1", tags=["a"])
    )
    results = await asyncio.gather(*[task_runs.CreateTaskRun(request) for _ in range(10)])
    assert sum(r.created for r in results) == 1 and len({r.task_run.id for r in results}) == 1
    task = results[0].task_run
    assert task.state.type == ST.STATE_TYPE_PENDING and task.map_index == -1
    assert task.state.state_details.task_run_id == task.id
    assert task.state.state_details.flow_run_id == run.id
    got = (await task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=task.id))).task_run
    assert got.id == task.id and list(got.tags) == ["a"]

    def create(**fields):
        return task_runs.CreateTaskRun(
            tpb.CreateTaskRunRequest(task_run=task_run_pb2.TaskRun(**fields))
        )

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await expect_error(create(flow_run_id=run.id), invalid, "task_run.task_key")
    await expect_error(create(task_key="t"), invalid, "task_run.flow_run_id")
    await expect_error(
        create(flow_run_id=str(uuid.uuid4()), task_key="t"), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        create(flow_run_id=run.id, task_key="t", map_index=-2), invalid, "task_run.map_index"
    )
    await expect_error(
        task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        propose_task(task_runs, str(uuid.uuid4()), state(ST.STATE_TYPE_RUNNING)),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        task_runs.SetTaskRunState(tpb.SetTaskRunStateRequest(task_run_id=task.id)), invalid, "state"
    )


async def test_a_cached_task_run_hits_the_cache_on_its_second_run(flows, runs, task_runs):
    run = await running_flow_run(flows, runs)
    key = unique("cache")
    first = await make_task(task_runs, run.id)
    assert (
        await propose_task(task_runs, first.id, state(ST.STATE_TYPE_RUNNING, cache_key=key))
    ).status == ACCEPT
    value = ST.ResultReference(serializer="json", inline_value=b'{"answer": 42}')
    done = await propose_task(
        task_runs, first.id, state(ST.STATE_TYPE_COMPLETED, cache_key=key, result=value)
    )
    assert done.status == ACCEPT

    second = await make_task(task_runs, run.id)
    hit = await propose_task(task_runs, second.id, state(ST.STATE_TYPE_RUNNING, cache_key=key))
    assert hit.status == REJECT and hit.state_written
    assert (hit.state.type, hit.state.name) == (ST.STATE_TYPE_COMPLETED, "Cached")
    assert hit.state.result == value and hit.details.reason == "Retrieved state from cache"
    assert hit.state.state_details.task_run_id == second.id

    third = await make_task(task_runs, run.id)
    refreshed = await propose_task(
        task_runs, third.id, state(ST.STATE_TYPE_RUNNING, cache_key=key, refresh_cache=True)
    )
    assert refreshed.status == ACCEPT and refreshed.state.name == "Running"


async def test_task_retries_and_reruns(flows, runs, task_runs):
    run = await running_flow_run(flows, runs)
    task = await make_task(
        task_runs,
        run.id,
        empirical_policy=task_run_pb2.TaskRunPolicy(
            retries=1, retry_delays=[duration_pb2.Duration(seconds=0)]
        ),
    )
    await propose_task(task_runs, task.id, state(ST.STATE_TYPE_RUNNING))
    failed = await propose_task(task_runs, task.id, state(ST.STATE_TYPE_FAILED))
    assert failed.status == REJECT and failed.state.name == "AwaitingRetry"
    retrying = await propose_task(task_runs, task.id, state(ST.STATE_TYPE_RUNNING))
    assert retrying.status == ACCEPT and retrying.state.name == "Retrying"
    final = await propose_task(task_runs, task.id, state(ST.STATE_TYPE_FAILED))
    assert final.status == ACCEPT and final.state.name == "Failed"
    got = (await task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=task.id))).task_run
    assert got.run_count == 2 and got.flow_run_run_count == 1


async def test_tasks_wait_for_their_flow_run(flows, runs, task_runs):
    run = await new_run(flows, runs)  # PENDING
    task = await make_task(task_runs, run.id)
    aborted = await propose_task(task_runs, task.id, state(ST.STATE_TYPE_RUNNING))
    assert aborted.status == ABORT
    assert aborted.details.reason == "The enclosing flow must be running to begin task execution."
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    await propose(runs, run.id, state(ST.STATE_TYPE_PAUSED))
    not_ready = await propose_task(task_runs, task.id, state(ST.STATE_TYPE_RUNNING))
    assert not_ready.status == REJECT and not_ready.state.name == "NotReady"


async def test_tag_concurrency_limits(flows, runs, task_runs, channel):
    limits = cgrpc.ConcurrencyLimitServiceStub(channel)
    tag = unique("db")
    created = await limits.CreateConcurrencyLimit(
        cpb.CreateConcurrencyLimitRequest(tag=tag, concurrency_limit=1)
    )
    assert created.created and created.concurrency_limit.concurrency_limit == 1
    run = await running_flow_run(flows, runs)
    one = await make_task(task_runs, run.id, tags=[tag])
    two = await make_task(task_runs, run.id, tags=[tag])
    assert (await propose_task(task_runs, one.id, state(ST.STATE_TYPE_RUNNING))).status == ACCEPT
    held = (
        await limits.GetConcurrencyLimit(cpb.GetConcurrencyLimitRequest(tag=tag))
    ).concurrency_limit
    assert list(held.active_slots) == [one.id]
    waiting = await propose_task(task_runs, two.id, state(ST.STATE_TYPE_RUNNING))
    assert waiting.status == WAIT and waiting.details.delay.seconds == 30
    assert waiting.details.reason == f"Concurrency limit reached for tags: {tag}"
    await propose_task(task_runs, one.id, state(ST.STATE_TYPE_COMPLETED))
    assert (await propose_task(task_runs, two.id, state(ST.STATE_TYPE_RUNNING))).status == ACCEPT

    updated = await limits.CreateConcurrencyLimit(
        cpb.CreateConcurrencyLimitRequest(tag=tag, concurrency_limit=0)
    )
    assert not updated.created and updated.concurrency_limit.concurrency_limit == 0
    three = await make_task(task_runs, run.id, tags=[tag])
    blocked = await propose_task(task_runs, three.id, state(ST.STATE_TYPE_RUNNING))
    assert blocked.status == ABORT and "is 0 and will deadlock" in blocked.details.reason

    listed = await limits.ListConcurrencyLimits(cpb.ListConcurrencyLimitsRequest())
    assert tag in [limit.tag for limit in listed.concurrency_limits]
    await limits.DeleteConcurrencyLimit(cpb.DeleteConcurrencyLimitRequest(tag=tag))
    await expect_error(
        limits.GetConcurrencyLimit(cpb.GetConcurrencyLimitRequest(tag=tag)),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        limits.DeleteConcurrencyLimit(cpb.DeleteConcurrencyLimitRequest(tag=tag)),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        limits.CreateConcurrencyLimit(
            cpb.CreateConcurrencyLimitRequest(tag="x", concurrency_limit=-1)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "concurrency_limit",
    )
    await expect_error(
        limits.CreateConcurrencyLimit(cpb.CreateConcurrencyLimitRequest(concurrency_limit=1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tag",
    )


async def test_a_task_awaiting_retry_frees_its_tag_slot(flows, runs, task_runs, channel):
    limits = cgrpc.ConcurrencyLimitServiceStub(channel)
    tag = unique("db")
    await limits.CreateConcurrencyLimit(
        cpb.CreateConcurrencyLimitRequest(tag=tag, concurrency_limit=1)
    )
    run = await running_flow_run(flows, runs)
    slow_retry = task_run_pb2.TaskRunPolicy(
        retries=1, retry_delays=[duration_pb2.Duration(seconds=600)]
    )
    one = await make_task(task_runs, run.id, tags=[tag], empirical_policy=slow_retry)
    two = await make_task(task_runs, run.id, tags=[tag])
    assert (await propose_task(task_runs, one.id, state(ST.STATE_TYPE_RUNNING))).status == ACCEPT
    failed = await propose_task(task_runs, one.id, state(ST.STATE_TYPE_FAILED))
    assert failed.status == REJECT and failed.state.name == "AwaitingRetry"
    held = await limits.GetConcurrencyLimit(cpb.GetConcurrencyLimitRequest(tag=tag))
    assert list(held.concurrency_limit.active_slots) == []
    assert (await propose_task(task_runs, two.id, state(ST.STATE_TYPE_RUNNING))).status == ACCEPT
    held = await limits.GetConcurrencyLimit(cpb.GetConcurrencyLimitRequest(tag=tag))
    assert list(held.concurrency_limit.active_slots) == [two.id]


async def test_a_subflow_state_is_mirrored_on_its_parent_task(flows, runs, task_runs):
    parent = await running_flow_run(flows, runs)
    task = await make_task(task_runs, parent.id)
    child = await new_run(flows, runs, parent_task_run_id=task.id)
    await propose(runs, child.id, state(ST.STATE_TYPE_RUNNING))
    mirrored = (await task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=task.id))).task_run
    assert mirrored.state.type == ST.STATE_TYPE_RUNNING
    assert mirrored.state.state_details.child_flow_run_id == child.id
    child_state = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=child.id))).flow_run.state
    assert child_state.state_details.task_run_id == task.id


@pytest.mark.parametrize("name", ["Late"])
async def test_only_scheduled_runs_become_late(flows, runs, name):
    run = await new_run(flows, runs)
    refused = await propose(runs, run.id, state(ST.STATE_TYPE_SCHEDULED, name))
    assert (
        refused.status == REJECT
        and refused.details.reason == "Only scheduled flows can be marked late."
    )


async def test_an_expired_cache_entry_is_not_used(flows, runs, task_runs):
    run = await running_flow_run(flows, runs)
    key = unique("expiring")
    first = await make_task(task_runs, run.id)
    await propose_task(task_runs, first.id, state(ST.STATE_TYPE_RUNNING, cache_key=key))
    past = datetime.now(UTC) - timedelta(seconds=1)
    value = ST.ResultReference(serializer="json", inline_value=b"1")
    await propose_task(
        task_runs,
        first.id,
        state(ST.STATE_TYPE_COMPLETED, cache_key=key, cache_expiration=ts(past), result=value),
    )
    second = await make_task(task_runs, run.id)
    miss = await propose_task(task_runs, second.id, state(ST.STATE_TYPE_RUNNING, cache_key=key))
    assert miss.status == ACCEPT and miss.state.name == "Running"


APPROVAL = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
    "required": ["approved"],
    "additionalProperties": False,
}


def struct(value: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


async def test_a_run_that_waits_for_input_resumes_only_with_input_that_matches(flows, runs):
    run = await new_run(flows, runs)
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    waiting = state(ST.STATE_TYPE_PAUSED, pause_key="approve")
    waiting.state_details.run_input_schema.CopyFrom(struct(APPROVAL))
    paused = await propose(runs, run.id, waiting)
    assert paused.status == ACCEPT
    assert json_format.MessageToDict(paused.state.state_details.run_input_schema) == APPROVAL

    async def resume(run_input: dict | None) -> opb.OrchestrationResult:
        request = pb.ResumeFlowRunRequest(flow_run_id=run.id)
        if run_input is not None:
            request.run_input.CopyFrom(struct(run_input))
        return (await runs.ResumeFlowRun(request)).result

    for bad, reason in (
        (None, "This run waits for input: resume it with run_input matching its schema."),
        ({}, "Run input does not match its schema: 'approved' is a required property"),
        ({"approved": "yes"}, "'yes' is not of type 'boolean' (at ['approved'])"),
        ({"approved": True, "extra": 1}, "Additional properties are not allowed"),
    ):
        refused = await resume(bad)
        assert refused.status == REJECT and not refused.state_written, bad
        assert reason in refused.details.reason, (bad, refused.details.reason)
        assert refused.state.type == ST.STATE_TYPE_PAUSED
    resumed = await resume({"approved": True, "note": "ship it"})
    assert resumed.status == ACCEPT and resumed.state.type == ST.STATE_TYPE_RUNNING
    given = json_format.MessageToDict(resumed.state.state_details.run_input)
    assert given == {"approved": True, "note": "ship it"}
    got = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))).flow_run
    assert json_format.MessageToDict(got.state.state_details.run_input) == given


async def test_input_schemas_are_checked_when_proposed(flows, runs):
    run = await new_run(flows, runs)
    await propose(runs, run.id, state(ST.STATE_TYPE_RUNNING))
    bad = state(ST.STATE_TYPE_PAUSED)
    bad.state_details.run_input_schema.CopyFrom(struct({"type": "no-such-type"}))
    await expect_error(
        runs.SetFlowRunState(pb.SetFlowRunStateRequest(flow_run_id=run.id, state=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "state.state_details.run_input_schema",
    )
    not_a_pause = state(ST.STATE_TYPE_COMPLETED)
    not_a_pause.state_details.run_input_schema.CopyFrom(struct(APPROVAL))
    await expect_error(
        runs.SetFlowRunState(pb.SetFlowRunStateRequest(flow_run_id=run.id, state=not_a_pause)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "state.state_details.run_input_schema",
    )
    # A client cannot write the input itself: the server keeps it for resumes.
    forged = state(ST.STATE_TYPE_COMPLETED)
    forged.state_details.run_input.CopyFrom(struct({"approved": True}))
    done = await propose(runs, run.id, forged)
    assert done.status == ACCEPT and not done.state.state_details.HasField("run_input")
    got = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))).flow_run
    assert got.state.type == ST.STATE_TYPE_COMPLETED
