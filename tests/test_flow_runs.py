"""FlowRunService over gRPC: create, read, update, delete, states and history."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2
from sqlalchemy import event

from runwire.v1 import (
    deployment_pb2,
    flow_run_pb2,
    orchestration_pb2,
    state_pb2,
)
from runwire.v1 import deployment_service_pb2 as dpb
from runwire.v1 import filters_pb2 as f
from runwire.v1 import flow_run_service_pb2 as pb
from tests.helpers import expect_error, history, make_flow, make_run, ts, unique

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ST = state_pb2


async def set_state(runs, run_id: str, type_: int, name: str = "", force=False, **kw):
    response = await runs.SetFlowRunState(
        pb.SetFlowRunStateRequest(
            flow_run_id=run_id, state=ST.State(type=type_, name=name, **kw), force=force
        )
    )
    return response.result


async def test_create_defaults_to_pending_with_a_generated_name(flows, runs):
    flow = await make_flow(flows)
    params = struct_pb2.Struct()
    params.update({"x": 1, "nested": {"y": [1, 2]}})
    run = await make_run(runs, flow.id, parameters=params, tags=["t1"], labels={"k": "v"})
    assert re.fullmatch(r"[a-z]+-[a-z]+", run.name), run.name
    assert run.state.type == ST.STATE_TYPE_PENDING and run.state.name == "Pending"
    assert run.state.state_details.flow_run_id == run.id
    assert run.parameters == params and list(run.tags) == ["t1"] and run.labels["k"] == "v"
    assert run.expected_start_time == run.state.timestamp
    assert run.run_count == 0 and not run.HasField("start_time")
    # Ids are time-ordered: a later run has a greater id.
    later = await make_run(runs, flow.id)
    assert uuid.UUID(later.id) > uuid.UUID(run.id)


async def test_create_with_a_scheduled_state(flows, runs):
    flow = await make_flow(flows)
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    run = await make_run(
        runs,
        flow.id,
        name="my-run",
        state=ST.State(
            type=ST.STATE_TYPE_SCHEDULED, state_details=ST.StateDetails(scheduled_time=ts(when))
        ),
    )
    assert run.name == "my-run"
    assert run.state.name == "Scheduled"
    assert run.expected_start_time == ts(when)
    assert run.next_scheduled_start_time == ts(when)


async def test_create_errors_change_nothing(flows, runs, deployments):
    flow = await make_flow(flows)
    other = await make_flow(flows)
    dep = (
        await deployments.CreateDeployment(
            dpb.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(name="d", flow_id=other.id)
            )
        )
    ).deployment

    def create(**fields):
        return runs.CreateFlowRun(pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(**fields)))

    await expect_error(create(), INVALID, "flow_run.flow_id")
    await expect_error(create(flow_id="abc"), INVALID, "flow_run.flow_id")
    await expect_error(create(flow_id=str(uuid.uuid4())), NOT_FOUND)
    await expect_error(
        create(flow_id=flow.id, deployment_id=dep.id), INVALID, "flow_run.deployment_id"
    )
    await expect_error(create(flow_id=flow.id, deployment_id=str(uuid.uuid4())), NOT_FOUND)
    await expect_error(
        create(flow_id=flow.id, state=ST.State(name="x")), INVALID, "flow_run.state.type"
    )
    await expect_error(
        create(flow_id=flow.id, state=ST.State(type=42)), INVALID, "flow_run.state.type"
    )
    await expect_error(
        create(flow_id=flow.id, empirical_policy=flow_run_pb2.FlowRunPolicy(retries=-1)),
        INVALID,
        "flow_run.empirical_policy.retries",
    )
    await expect_error(
        create(
            flow_id=flow.id,
            state=ST.State(
                type=ST.STATE_TYPE_COMPLETED,
                result=ST.ResultReference(inline_value=b"x" * (1024 * 1024 + 1)),
            ),
        ),
        INVALID,
        "flow_run.state.result.inline_value",
    )
    count = await runs.CountFlowRuns(
        pb.CountFlowRunsRequest(
            filter=f.FlowRunCriteria(
                flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
            )
        )
    )
    assert count.count == 0


async def test_idempotent_create_under_concurrency(flows, runs):
    flow = await make_flow(flows)
    key = unique("key")
    request = pb.CreateFlowRunRequest(
        flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, idempotency_key=key)
    )
    responses = await asyncio.gather(*[runs.CreateFlowRun(request) for _ in range(40)])
    assert sum(r.created for r in responses) == 1
    assert len({r.flow_run.id for r in responses}) == 1
    # A repeated key ignores the state sent with it and returns the run as it is.
    again = await runs.CreateFlowRun(
        pb.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(
                flow_id=flow.id, idempotency_key=key, state=ST.State(type=ST.STATE_TYPE_RUNNING)
            )
        )
    )
    assert not again.created and again.flow_run.state.type == ST.STATE_TYPE_PENDING
    # The same key under another flow is another run.
    other = await make_flow(flows)
    elsewhere = await runs.CreateFlowRun(
        pb.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(flow_id=other.id, idempotency_key=key)
        )
    )
    assert elsewhere.created


async def test_idempotent_create_across_processes(flows, runs, server, server_process):
    # On PostgreSQL, a second server process (a replica) on the same database: the database's
    # unique constraint, not one event loop, has to make the decision. A SQLite file serves one
    # server process at a time, whose writers race through its one event loop.
    from runwire.v1 import (
        flow_pb2,
        flow_run_service_pb2_grpc,
        flow_service_pb2,
        flow_service_pb2_grpc,
    )

    port = server.port
    if server.app.db.is_postgresql:
        port = server_process(server.app.db.url.render_as_string(hide_password=False))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        flows2 = flow_service_pb2_grpc.FlowServiceStub(ch)
        runs2 = flow_run_service_pb2_grpc.FlowRunServiceStub(ch)
        name = unique("shared")
        request = flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=name))
        both = await asyncio.gather(
            *[(flows if i % 2 else flows2).CreateFlow(request) for i in range(10)]
        )
        assert len({r.flow.id for r in both}) == 1 and sum(r.created for r in both) == 1
        create = pb.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(flow_id=both[0].flow.id, idempotency_key="k")
        )
        results = await asyncio.gather(
            *[(runs if i % 2 else runs2).CreateFlowRun(create) for i in range(20)]
        )
        assert sum(r.created for r in results) == 1
        assert len({r.flow_run.id for r in results}) == 1


async def test_get_flow_run(flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    got = await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))
    assert got.flow_run.id == run.id and got.flow_run.state == run.state
    await expect_error(
        runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=str(uuid.uuid4()))), NOT_FOUND
    )
    await expect_error(
        runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id="x")), INVALID, "flow_run_id"
    )


async def test_update_flow_run_with_a_field_mask(flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id, tags=["a"], name="before")
    updated = await runs.UpdateFlowRun(
        pb.UpdateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(
                id=run.id,
                name="after",
                tags=["b", "c"],
                flow_version="v2",
                empirical_policy=flow_run_pb2.FlowRunPolicy(
                    retries=3, retry_delay=duration_pb2.Duration(seconds=5)
                ),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["tags", "empirical_policy"]),
        )
    )
    got = updated.flow_run
    assert got.name == "before"  # not in the mask
    assert list(got.tags) == ["b", "c"] and got.flow_version == ""
    assert got.empirical_policy.retries == 3 and got.empirical_policy.retry_delay.seconds == 5
    assert got.updated.ToDatetime() >= run.updated.ToDatetime()

    implied = await runs.UpdateFlowRun(
        pb.UpdateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(id=run.id, flow_version="v3"))
    )
    assert implied.flow_run.flow_version == "v3" and list(implied.flow_run.tags) == ["b", "c"]


async def test_update_flow_run_errors(flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id, name="same")

    def update(flow_run, paths=()):
        return runs.UpdateFlowRun(
            pb.UpdateFlowRunRequest(
                flow_run=flow_run, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
            )
        )

    await expect_error(
        update(flow_run_pb2.FlowRun(id=run.id, name="x"), ["state"]), INVALID, "update_mask"
    )
    await expect_error(update(flow_run_pb2.FlowRun(id=run.id)), INVALID, "update_mask")
    await expect_error(update(flow_run_pb2.FlowRun(id=run.id), ["name"]), INVALID, "flow_run.name")
    await expect_error(update(flow_run_pb2.FlowRun(name="x"), ["name"]), INVALID, "flow_run.id")
    await expect_error(
        update(flow_run_pb2.FlowRun(id=str(uuid.uuid4()), name="x"), ["name"]), NOT_FOUND
    )
    got = await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))
    assert got.flow_run.name == "same"


async def test_delete_flow_run(flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    await set_state(runs, run.id, ST.STATE_TYPE_RUNNING)
    await runs.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id=run.id))
    await expect_error(runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id)), NOT_FOUND)
    await expect_error(
        runs.ListFlowRunStates(pb.ListFlowRunStatesRequest(flow_run_id=run.id)), NOT_FOUND
    )
    await expect_error(runs.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id=run.id)), NOT_FOUND)
    await expect_error(
        runs.DeleteFlowRun(pb.DeleteFlowRunRequest(flow_run_id="")), INVALID, "flow_run_id"
    )


async def test_states_are_recorded_with_bookkeeping(flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    running = await set_state(runs, run.id, ST.STATE_TYPE_RUNNING)
    assert running.status == orchestration_pb2.SET_STATE_STATUS_ACCEPT
    assert running.state_written and running.state.name == "Running"
    await asyncio.sleep(0.05)
    done = await set_state(
        runs,
        run.id,
        ST.STATE_TYPE_COMPLETED,
        message="ok",
        result=ST.ResultReference(serializer="json", inline_value=b"42"),
    )
    assert done.state.type == ST.STATE_TYPE_COMPLETED and done.state.message == "ok"
    assert done.state.result.inline_value == b"42"

    got = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))).flow_run
    assert got.state.id == done.state.id
    assert got.run_count == 1
    assert got.start_time == running.state.timestamp
    assert got.end_time == done.state.timestamp
    assert got.total_run_time.ToTimedelta() >= timedelta(milliseconds=50)
    assert got.estimated_run_time == got.total_run_time

    states = (await runs.ListFlowRunStates(pb.ListFlowRunStatesRequest(flow_run_id=run.id))).states
    assert [s.type for s in states] == [
        ST.STATE_TYPE_PENDING,
        ST.STATE_TYPE_RUNNING,
        ST.STATE_TYPE_COMPLETED,
    ]
    times = [s.timestamp.ToDatetime() for s in states]
    assert times == sorted(times) and len(set(times)) == 3


async def test_list_states_pages_oldest_first(flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    for i in range(6):
        await set_state(
            runs,
            run.id,
            ST.STATE_TYPE_RUNNING if i % 2 else ST.STATE_TYPE_PENDING,
            name=f"s{i}",
            force=True,
        )
    names, token = [], ""
    while True:
        page = await runs.ListFlowRunStates(
            pb.ListFlowRunStatesRequest(flow_run_id=run.id, page_size=3, page_token=token)
        )
        names += [s.name for s in page.states]
        token = page.next_page_token
        if not token:
            break
    assert names == ["Pending", "s0", "s1", "s2", "s3", "s4", "s5"]


async def test_set_state_errors(flows, runs):
    run = await make_run(runs, (await make_flow(flows)).id)
    await expect_error(
        runs.SetFlowRunState(pb.SetFlowRunStateRequest(flow_run_id=run.id)), INVALID, "state"
    )
    await expect_error(
        runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(flow_run_id=run.id, state=ST.State(name="x"))
        ),
        INVALID,
        "state.type",
    )
    await expect_error(
        runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=str(uuid.uuid4()), state=ST.State(type=ST.STATE_TYPE_RUNNING)
            )
        ),
        NOT_FOUND,
    )
    await expect_error(
        runs.SetFlowRunState(
            pb.SetFlowRunStateRequest(
                flow_run_id=run.id,
                state=ST.State(
                    type=ST.STATE_TYPE_COMPLETED, result=ST.ResultReference(serializer="json")
                ),
            )
        ),
        INVALID,
        "state.result",
    )
    states = (await runs.ListFlowRunStates(pb.ListFlowRunStatesRequest(flow_run_id=run.id))).states
    assert len(states) == 1


async def test_history_counts_runs_by_state_per_interval(flows, runs):
    flow = await make_flow(flows)
    base = datetime(2031, 5, 1, tzinfo=UTC)

    async def scheduled(offset_minutes: int) -> str:
        when = base + timedelta(minutes=offset_minutes)
        run = await make_run(
            runs,
            flow.id,
            state=ST.State(
                type=ST.STATE_TYPE_SCHEDULED, state_details=ST.StateDetails(scheduled_time=ts(when))
            ),
        )
        return run.id

    await scheduled(1)
    await scheduled(2)
    third = await scheduled(65)
    await set_state(runs, third, ST.STATE_TYPE_SCHEDULED, name="Late")
    await scheduled(200)  # outside the window

    only_flow = f.FlowRunCriteria(
        flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
    )
    response = await runs.GetFlowRunHistory(
        pb.GetFlowRunHistoryRequest(
            history_start=ts(base),
            history_end=ts(base + timedelta(hours=3)),
            history_interval=duration_pb2.Duration(seconds=3600),
            filter=only_flow,
        )
    )
    assert len(response.intervals) == 3
    first, second, third_interval = response.intervals
    assert first.interval_start == ts(base) and first.interval_end == ts(base + timedelta(hours=1))
    assert [(s.state_name, s.count_runs) for s in first.states] == [("Scheduled", 2)]
    assert [(s.state_name, s.count_runs) for s in second.states] == [("Late", 1)]
    assert list(third_interval.states) == []


async def test_history_errors(runs):
    start = ts(datetime(2030, 1, 1, tzinfo=UTC))
    end = ts(datetime(2030, 1, 2, tzinfo=UTC))

    def history(**kw):
        return runs.GetFlowRunHistory(pb.GetFlowRunHistoryRequest(**kw))

    await expect_error(
        history(
            history_start=start,
            history_end=end,
            history_interval=duration_pb2.Duration(nanos=500_000_000),
        ),
        INVALID,
        "history_interval",
    )
    await expect_error(
        history(
            history_start=start, history_end=end, history_interval=duration_pb2.Duration(seconds=60)
        ),
        INVALID,
        "history_interval",
    )
    await expect_error(
        history(history_end=end, history_interval=duration_pb2.Duration(seconds=60)),
        INVALID,
        "history_start",
    )
    await expect_error(
        history(
            history_start=end,
            history_end=start,
            history_interval=duration_pb2.Duration(seconds=3600),
        ),
        INVALID,
        "history_end",
    )


async def test_bad_values_in_states_and_names_name_their_field(flows, runs):
    flow = await make_flow(flows)
    bad_time = ST.StateDetails(scheduled_time=timestamp_pb2.Timestamp(seconds=-(10**12)))
    await expect_error(
        runs.CreateFlowRun(
            pb.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(
                    flow_id=flow.id,
                    state=ST.State(type=ST.STATE_TYPE_SCHEDULED, state_details=bad_time),
                )
            )
        ),
        INVALID,
        "flow_run.state.state_details.scheduled_time",
    )
    await expect_error(
        runs.CreateFlowRun(
            pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, name="a\x00"))
        ),
        INVALID,
        "flow_run.name",
    )
    await expect_error(
        runs.ListFlowRunStates(pb.ListFlowRunStatesRequest(flow_run_id="12")),
        INVALID,
        "flow_run_id",
    )


async def test_parameters_no_database_can_keep_are_refused(flows, runs):
    flow = await make_flow(flows)
    for bad in ({"x": float("nan")}, {"x": float("inf")}, {"x": "a\x00b"}, {"n": {"y": "\x00"}}):
        params = struct_pb2.Struct()
        params.update(bad)
        await expect_error(
            runs.CreateFlowRun(
                pb.CreateFlowRunRequest(
                    flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, parameters=params)
                )
            ),
            INVALID,
            "flow_run.parameters",
        )


async def test_nul_in_labels_and_state_text_is_refused(flows, runs):
    flow = await make_flow(flows)

    def create(**fields):
        return runs.CreateFlowRun(
            pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, **fields))
        )

    await expect_error(create(labels={"k": "v\x00"}), INVALID, "flow_run.labels['k']")
    await expect_error(
        create(state=ST.State(type=ST.STATE_TYPE_PENDING, message="\x00")),
        INVALID,
        "flow_run.state.message",
    )
    await expect_error(
        create(
            state=ST.State(
                type=ST.STATE_TYPE_PENDING, state_details=ST.StateDetails(cache_key="a\x00")
            )
        ),
        INVALID,
        "flow_run.state.state_details.cache_key",
    )


async def test_history_sums_match_each_runs_estimates(flows, runs):
    """The database aggregates history; its sums equal the per-run estimates GetFlowRun gives
    (run time so far, lateness), and a run exactly on a boundary is in the later interval."""
    flow = await make_flow(flows)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)

    async def scheduled(offset: timedelta) -> str:
        when = ts(base + offset)
        run = await make_run(
            runs,
            flow.id,
            state=ST.State(
                type=ST.STATE_TYPE_SCHEDULED, state_details=ST.StateDetails(scheduled_time=when)
            ),
        )
        return run.id

    finished = await scheduled(timedelta(minutes=10))
    waiting = await scheduled(timedelta(minutes=20))
    on_boundary = await scheduled(timedelta(hours=1))
    running = await scheduled(timedelta(minutes=70, microseconds=1))
    for run_id, states in (
        (finished, (ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_COMPLETED)),
        (on_boundary, (ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_FAILED)),
        (running, (ST.STATE_TYPE_RUNNING,)),
    ):
        for state_type in states:
            assert (await set_state(runs, run_id, state_type)).status == 1  # ACCEPT
    await asyncio.sleep(0.2)  # the running run accumulates run time

    only_flow = f.FlowRunCriteria(
        flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
    )
    got = await history(runs, base, base + timedelta(hours=2), timedelta(hours=1), only_flow)
    expected = {}
    for interval, run_id in ((0, finished), (0, waiting), (1, on_boundary), (1, running)):
        run = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run_id))).flow_run
        expected[(interval, run.state.name)] = (
            1,
            run.estimated_run_time.ToTimedelta(),
            run.estimated_start_time_delta.ToTimedelta(),
        )
    assert set(got) == set(expected)
    for key, (count, run_time, lateness) in expected.items():
        got_count, got_run_time, got_lateness = got[key]
        assert got_count == count, key
        # Both grow with the clock for unfinished runs; they were read moments apart.
        assert abs(got_run_time - run_time) < timedelta(seconds=2), (key, got_run_time, run_time)
        assert abs(got_lateness - lateness) < timedelta(seconds=2), (key, got_lateness, lateness)
    assert expected[(0, "Scheduled")][2] > timedelta(hours=1)  # waiting, and late
    assert expected[(0, "Completed")][2] > timedelta(hours=1)  # started late
    assert expected[(1, "Running")][1] > timedelta(0)


async def test_get_reads_the_newest_state_and_tags_with_or_without_statement_listeners(
    server, flows, runs
):
    """GetFlowRun reads in one statement, on SQLite outside any transaction; a statement
    listener sends it through SQLAlchemy's path, which must not leave an old snapshot behind."""
    flow = await make_flow(flows)
    run = await make_run(runs, flow.id, tags=["b", "a"])
    heard: list[str] = []

    def listen(_conn, _cursor, statement, *_args) -> None:
        heard.append(statement)

    event.listen(server.app.db.engine, "before_cursor_execute", listen)
    try:
        got = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))).flow_run
    finally:
        event.remove(server.app.db.engine, "before_cursor_execute", listen)
    assert list(got.tags) == ["a", "b"] and got.state.type == ST.STATE_TYPE_PENDING
    assert any("FROM flow_runs" in statement for statement in heard)
    await set_state(runs, run.id, ST.STATE_TYPE_RUNNING)
    got = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))).flow_run
    assert got.state.type == ST.STATE_TYPE_RUNNING
    bare = await make_run(runs, flow.id)
    got = (await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=bare.id))).flow_run
    assert list(got.tags) == []
