"""TaskRunService over gRPC: slugs and mapped runs, lists, deletes, results and the graph."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import fsspec
import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2

import runwire
from runwire.v1 import filters_pb2 as f
from runwire.v1 import flow_run_pb2, task_run_pb2
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import state_pb2 as ST
from runwire.v1 import task_run_service_pb2 as tpb
from tests.helpers import expect_error, make_flow, make_run, unique

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
TI = task_run_pb2.TaskInput


async def running_run(flows, runs, **fields) -> flow_run_pb2.FlowRun:
    run = await make_run(runs, (await make_flow(flows)).id, **fields)
    await runs.SetFlowRunState(
        pb.SetFlowRunStateRequest(flow_run_id=run.id, state=ST.State(type=ST.STATE_TYPE_RUNNING))
    )
    return run


async def task(task_runs, flow_run_id: str, task_key: str, **fields) -> task_run_pb2.TaskRun:
    response = await task_runs.CreateTaskRun(
        tpb.CreateTaskRunRequest(
            task_run=task_run_pb2.TaskRun(flow_run_id=flow_run_id, task_key=task_key, **fields)
        )
    )
    return response.task_run


async def finish(task_runs, task_run_id: str, value: bytes | None = None, uri: str = "") -> None:
    for type_ in (ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_COMPLETED):
        result = None
        if type_ == ST.STATE_TYPE_COMPLETED and (value is not None or uri):
            result = (
                ST.ResultReference(serializer="json", inline_value=value)
                if value is not None
                else ST.ResultReference(serializer="json", location_uri=uri)
            )
        response = await task_runs.SetTaskRunState(
            tpb.SetTaskRunStateRequest(
                task_run_id=task_run_id, state=ST.State(type=type_, result=result)
            )
        )
        assert response.result.state_written


class Mapped:
    def __init__(self, run, parent, children):
        self.run, self.parent, self.children = run, parent, children


@pytest_asyncio.fixture(scope="module")
async def mapped(flows, runs, task_runs) -> Mapped:
    run = await running_run(flows, runs)
    parent = await task(task_runs, run.id, "square")
    children = [
        await task(task_runs, run.id, "square", dynamic_key=str(i), map_index=i) for i in range(100)
    ]
    return Mapped(run, parent, children)


async def test_slug_lookup_with_and_without_map_index(task_runs, mapped):
    by_slug = await task_runs.GetTaskRunBySlug(
        tpb.GetTaskRunBySlugRequest(flow_run_id=mapped.run.id, task_slug="square")
    )
    assert by_slug.task_run.id == mapped.parent.id and by_slug.task_run.map_index == -1
    child = await task_runs.GetTaskRunBySlug(
        tpb.GetTaskRunBySlugRequest(flow_run_id=mapped.run.id, task_slug="square", map_index=57)
    )
    assert child.task_run.id == mapped.children[57].id and child.task_run.map_index == 57

    def lookup(**kw):
        return task_runs.GetTaskRunBySlug(tpb.GetTaskRunBySlugRequest(**kw))

    await expect_error(
        lookup(flow_run_id=mapped.run.id, task_slug="square", map_index=100), NOT_FOUND
    )
    await expect_error(lookup(flow_run_id=mapped.run.id, task_slug="cube"), NOT_FOUND)
    await expect_error(lookup(flow_run_id=str(uuid.uuid4()), task_slug="square"), NOT_FOUND)
    await expect_error(lookup(flow_run_id=mapped.run.id), INVALID, "task_slug")
    await expect_error(
        lookup(flow_run_id=mapped.run.id, task_slug="square", map_index=-5), INVALID, "map_index"
    )


async def test_an_ambiguous_slug_is_refused(flows, runs, task_runs):
    run = await running_run(flows, runs)
    await task(task_runs, run.id, "twice", dynamic_key="a")
    await task(task_runs, run.id, "twice", dynamic_key="b")
    details = await expect_error(
        task_runs.GetTaskRunBySlug(
            tpb.GetTaskRunBySlugRequest(flow_run_id=run.id, task_slug="twice")
        ),
        PRECONDITION,
    )
    assert details.reason == "AMBIGUOUS_TASK_SLUG"


async def test_list_and_count_task_runs(task_runs, mapped):
    in_run = tpb.TaskRunCriteria(
        task_runs=f.TaskRunFilter(
            flow_run_id=f.StringFilter(any_of=f.StringList(values=[mapped.run.id]))
        )
    )
    count = await task_runs.CountTaskRuns(tpb.CountTaskRunsRequest(filter=in_run))
    assert count.count == 101
    seen, token = [], ""
    while True:
        page = await task_runs.ListTaskRuns(
            tpb.ListTaskRunsRequest(
                filter=in_run, sort=f.TASK_RUN_SORT_ID_ASC, page_size=30, page_token=token
            )
        )
        seen += [t.id for t in page.task_runs]
        token = page.next_page_token
        if not token:
            break
    assert seen == [mapped.parent.id] + [c.id for c in mapped.children]

    by_flow_run_name = tpb.TaskRunCriteria(
        flow_runs=f.FlowRunFilter(
            name=f.StringFilter(any_of=f.StringList(values=[mapped.run.name]))
        ),
        task_runs=f.TaskRunFilter(name=f.StringFilter(like="square-9")),
    )
    named = await task_runs.ListTaskRuns(tpb.ListTaskRunsRequest(filter=by_flow_run_name))
    assert {t.map_index for t in named.task_runs} == {9} | set(range(90, 100))
    await expect_error(task_runs.ListTaskRuns(tpb.ListTaskRunsRequest(sort=99)), INVALID, "sort")
    await expect_error(
        task_runs.ListTaskRuns(tpb.ListTaskRunsRequest(page_size=-1)), INVALID, "page_size"
    )


async def test_flow_runs_filter_by_their_task_runs(flows, runs, task_runs):
    tagged = await running_run(flows, runs)
    plain = await running_run(flows, runs)
    tag = unique("tag")
    await task(task_runs, tagged.id, "extract", tags=[tag])
    await task(task_runs, plain.id, "extract")
    criteria = f.FlowRunCriteria(
        task_runs=f.TaskRunFilter(tags=f.TagsFilter(all_of=f.StringList(values=[tag])))
    )
    listed = await runs.ListFlowRuns(pb.ListFlowRunsRequest(filter=criteria))
    assert [r.id for r in listed.flow_runs] == [tagged.id]
    assert (await runs.CountFlowRuns(pb.CountFlowRunsRequest(filter=criteria))).count == 1


async def test_delete_task_run(flows, runs, task_runs):
    run = await running_run(flows, runs)
    doomed = await task(task_runs, run.id, "doomed")
    await task_runs.DeleteTaskRun(tpb.DeleteTaskRunRequest(task_run_id=doomed.id))
    await expect_error(
        task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=doomed.id)), NOT_FOUND
    )
    await expect_error(
        task_runs.DeleteTaskRun(tpb.DeleteTaskRunRequest(task_run_id=doomed.id)), NOT_FOUND
    )
    await expect_error(
        task_runs.DeleteTaskRun(tpb.DeleteTaskRunRequest(task_run_id="x")), INVALID, "task_run_id"
    )


async def test_inline_and_file_results_round_trip(flows, runs, task_runs, tmp_path: Path):
    run = await running_run(flows, runs)
    inline = await task(task_runs, run.id, "inline")
    await finish(task_runs, inline.id, value=b'{"rows": 3}')
    got = await task_runs.GetTaskRunResult(tpb.GetTaskRunResultRequest(task_run_id=inline.id))
    assert got.result.inline_value == b'{"rows": 3}' and got.result.serializer == "json"

    path = tmp_path / "result.json"
    path.write_bytes(b'{"rows": 4}')
    stored = await task(task_runs, run.id, "stored")
    await finish(task_runs, stored.id, uri=path.as_uri())
    got = await task_runs.GetTaskRunResult(tpb.GetTaskRunResultRequest(task_run_id=stored.id))
    with fsspec.open(got.result.location_uri, "rb") as handle:
        assert handle.read() == b'{"rows": 4}'


async def test_result_errors_change_nothing(flows, runs, task_runs, server):
    run = await running_run(flows, runs)
    unfinished = await task(task_runs, run.id, "unfinished")
    details = await expect_error(
        task_runs.GetTaskRunResult(tpb.GetTaskRunResultRequest(task_run_id=unfinished.id)),
        PRECONDITION,
    )
    assert details.reason == "TASK_RUN_NOT_FINISHED"
    await expect_error(
        task_runs.GetTaskRunResult(tpb.GetTaskRunResultRequest(task_run_id=str(uuid.uuid4()))),
        NOT_FOUND,
    )
    too_big = b"x" * (server.app.settings.max_inline_result_bytes + 1)
    await task_runs.SetTaskRunState(
        tpb.SetTaskRunStateRequest(
            task_run_id=unfinished.id, state=ST.State(type=ST.STATE_TYPE_RUNNING)
        )
    )
    await expect_error(
        task_runs.SetTaskRunState(
            tpb.SetTaskRunStateRequest(
                task_run_id=unfinished.id,
                state=ST.State(
                    type=ST.STATE_TYPE_COMPLETED, result=ST.ResultReference(inline_value=too_big)
                ),
            )
        ),
        INVALID,
        "state.result.inline_value",
    )
    states = await task_runs.ListTaskRunStates(
        tpb.ListTaskRunStatesRequest(task_run_id=unfinished.id)
    )
    assert [s.name for s in states.states] == ["Pending", "Running"]
    no_result = await task(task_runs, run.id, "no_result")
    await finish(task_runs, no_result.id)
    details = await expect_error(
        task_runs.GetTaskRunResult(tpb.GetTaskRunResultRequest(task_run_id=no_result.id)),
        PRECONDITION,
    )
    assert details.reason == "TASK_RUN_HAS_NO_RESULT"


async def test_a_mapped_parent_returns_its_childrens_results_in_map_order(flows, runs, task_runs):
    run = await running_run(flows, runs)
    parent = await task(task_runs, run.id, "double")
    children = [
        await task(task_runs, run.id, "double", dynamic_key=str(i), map_index=i) for i in range(5)
    ]
    for child in reversed(children):  # finishing order does not matter
        await finish(task_runs, child.id, value=str(child.map_index * 2).encode())
    got = await task_runs.GetTaskRunResult(tpb.GetTaskRunResultRequest(task_run_id=parent.id))
    assert [r.inline_value for r in got.child_results] == [b"0", b"2", b"4", b"6", b"8"]
    assert not got.HasField("result")

    pending = await task(task_runs, run.id, "double", dynamic_key="5", map_index=5)
    details = await expect_error(
        task_runs.GetTaskRunResult(tpb.GetTaskRunResultRequest(task_run_id=parent.id)), PRECONDITION
    )
    assert pending.id in details.message


async def test_the_graph_of_a_diamond(flows, runs, task_runs):
    run = await running_run(flows, runs)

    def from_(*upstream):
        return {
            "x": task_run_pb2.TaskInputList(
                inputs=[TI(input_type=TI.INPUT_TYPE_TASK_RUN, task_run_id=u.id) for u in upstream]
            )
        }

    a = await task(task_runs, run.id, "a")
    b = await task(task_runs, run.id, "b", task_inputs=from_(a))
    c = await task(
        task_runs,
        run.id,
        "c",
        task_inputs={
            **from_(a),
            "p": task_run_pb2.TaskInputList(
                inputs=[TI(input_type=TI.INPUT_TYPE_PARAMETER, parameter_name="n")]
            ),
        },
    )
    d = await task(
        task_runs,
        run.id,
        "d",
        task_inputs={
            "left": task_run_pb2.TaskInputList(
                inputs=[TI(input_type=TI.INPUT_TYPE_TASK_RUN, task_run_id=b.id)]
            ),
            "right": task_run_pb2.TaskInputList(
                inputs=[TI(input_type=TI.INPUT_TYPE_TASK_RUN, task_run_id=c.id)]
            ),
        },
    )
    await finish(task_runs, a.id)
    graph = await runs.GetFlowRunGraph(pb.GetFlowRunGraphRequest(flow_run_id=run.id))
    edges = {n.id: set(n.upstream_dependencies) for n in graph.nodes}
    assert edges == {a.id: set(), b.id: {a.id}, c.id: {a.id}, d.id: {b.id, c.id}}
    node_a = next(n for n in graph.nodes if n.id == a.id)
    assert node_a.name == a.name and node_a.state.type == ST.STATE_TYPE_COMPLETED
    assert node_a.HasField("start_time") and node_a.HasField("end_time")
    await expect_error(
        runs.GetFlowRunGraph(pb.GetFlowRunGraphRequest(flow_run_id=str(uuid.uuid4()))), NOT_FOUND
    )
    await expect_error(
        task_runs.CreateTaskRun(
            tpb.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(
                    flow_run_id=run.id,
                    task_key="e",
                    task_inputs={
                        "x": task_run_pb2.TaskInputList(
                            inputs=[TI(input_type=TI.INPUT_TYPE_TASK_RUN, task_run_id="nope")]
                        )
                    },
                )
            )
        ),
        INVALID,
        "task_run.task_inputs['x'][0].task_run_id",
    )


async def test_task_run_list_and_state_errors(task_runs):
    bad = tpb.TaskRunCriteria(
        task_runs=f.TaskRunFilter(flow_run_id=f.StringFilter(any_of=f.StringList(values=["no"])))
    )
    await expect_error(
        task_runs.CountTaskRuns(tpb.CountTaskRunsRequest(filter=bad)),
        INVALID,
        "filter.task_runs.flow_run_id.any_of",
    )
    await expect_error(
        task_runs.ListTaskRunStates(tpb.ListTaskRunStatesRequest(task_run_id=str(uuid.uuid4()))),
        NOT_FOUND,
    )
    await expect_error(
        task_runs.ListTaskRunStates(tpb.ListTaskRunStatesRequest(task_run_id="x")),
        INVALID,
        "task_run_id",
    )


def _without_estimates(message):
    """The message without the fields computed at the moment of reading."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.ClearField("estimated_run_time")
    copy.ClearField("estimated_start_time_delta")
    return copy


async def test_create_answers_with_the_run_as_get_reads_it(flows, runs, task_runs):
    # Creates answer from the values they wrote, without reading the run back.
    flow = await make_flow(flows)
    run = await make_run(
        runs,
        flow.id,
        tags=["b", "a"],
        labels={"team": "x"},
        work_pool_name=unique("pool"),
        work_queue_name="q",
        idempotency_key=unique("key"),
    )
    got = await runs.GetFlowRun(pb.GetFlowRunRequest(flow_run_id=run.id))
    assert list(run.tags) == ["a", "b"]
    assert _without_estimates(run) == _without_estimates(got.flow_run)

    made = await task(task_runs, run.id, "extract", tags=["z", "y"], cache_key="k")
    read = await task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=made.id))
    assert list(made.tags) == ["y", "z"]
    assert _without_estimates(made) == _without_estimates(read.task_run)


async def test_mapped_children_page_in_map_order(flows, runs, task_runs, server):
    # Made in a shuffled order, so that id order and map order differ.
    run = await running_run(flows, runs)
    order = [5, 0, 9, 3, 7, 1, 8, 2, 6, 4]
    await task(task_runs, run.id, "cube")
    made = {
        i: await task(task_runs, run.id, "cube", dynamic_key=str(i), map_index=i) for i in order
    }
    children = tpb.TaskRunCriteria(
        task_runs=f.TaskRunFilter(
            flow_run_id=f.StringFilter(any_of=f.StringList(values=[run.id])),
            task_key=f.StringFilter(any_of=f.StringList(values=["cube"])),
            map_index=f.IntFilter(ge=0),
        )
    )
    for sort, expected in (
        (f.TASK_RUN_SORT_MAP_INDEX_ASC, list(range(10))),
        (f.TASK_RUN_SORT_MAP_INDEX_DESC, list(range(9, -1, -1))),
    ):
        seen, token = [], ""
        while True:
            page = await task_runs.ListTaskRuns(
                tpb.ListTaskRunsRequest(filter=children, sort=sort, page_size=3, page_token=token)
            )
            seen += [t.map_index for t in page.task_runs]
            token = page.next_page_token
            if not token:
                break
        assert seen == expected
    window = tpb.TaskRunCriteria(
        task_runs=f.TaskRunFilter(
            flow_run_id=f.StringFilter(any_of=f.StringList(values=[run.id])),
            map_index=f.IntFilter(ge=3, le=5),
        )
    )
    some = await task_runs.ListTaskRuns(
        tpb.ListTaskRunsRequest(filter=window, sort=f.TASK_RUN_SORT_MAP_INDEX_ASC)
    )
    assert [t.id for t in some.task_runs] == [made[i].id for i in (3, 4, 5)]

    # The library's view pages through them in order (a blocking client, off the loop the
    # server answers on).
    def through_the_view() -> list[int]:
        with runwire.Client(f"127.0.0.1:{server.port}", timeout=10) as client:
            parent = client.get_task_run_by_slug("cube", run.id)
            lone = client.get_task_run(made[0].id)
            with pytest.raises(TypeError, match="is not a mapped task"):
                next(lone.iter_mapped())
            return [c.map_index for c in parent.iter_mapped()]

    assert await asyncio.to_thread(through_the_view) == list(range(10))


async def test_update_a_task_runs_name_and_tags(flows, runs, task_runs):
    run = await running_run(flows, runs)
    made = await task(task_runs, run.id, "load", tags=["a", "b"])

    async def update(paths, **fields):
        response = await task_runs.UpdateTaskRun(
            tpb.UpdateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(id=made.id, **fields),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            )
        )
        return response.task_run

    renamed = await update(["name"], name="load-orders", tags=["ignored"])
    assert renamed.name == "load-orders" and list(renamed.tags) == ["a", "b"]
    retagged = await update(["tags"], tags=["z", "a"])
    assert retagged.name == "load-orders" and sorted(retagged.tags) == ["a", "z"]
    both = await update([], name="load-all", tags=[])
    assert both.name == "load-all" and sorted(both.tags) == ["a", "z"]  # empty tags: not set
    got = await task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=made.id))
    assert got.task_run.name == "load-all" and sorted(got.task_run.tags) == ["a", "z"]
    for paths, fields, field in (
        (["task_key"], {"task_key": "x"}, "update_mask"),
        (["name"], {"name": ""}, "task_run.name"),
        ([], {}, "update_mask"),
        (["tags"], {"tags": ["x" * 300]}, "task_run.tags[0]"),
    ):
        await expect_error(
            task_runs.UpdateTaskRun(
                tpb.UpdateTaskRunRequest(
                    task_run=task_run_pb2.TaskRun(id=made.id, **fields),
                    update_mask=field_mask_pb2.FieldMask(paths=paths),
                )
            ),
            INVALID,
            field,
        )
    after = (await task_runs.GetTaskRun(tpb.GetTaskRunRequest(task_run_id=made.id))).task_run
    assert (after.name, after.tags, after.updated) == (
        got.task_run.name,
        got.task_run.tags,
        got.task_run.updated,
    )
    await expect_error(
        task_runs.UpdateTaskRun(
            tpb.UpdateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(id=str(uuid.uuid4()), name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        ),
        NOT_FOUND,
    )


async def test_the_client_library_updates_task_runs_and_resumes_with_input(server):
    async with runwire.AsyncClient(f"127.0.0.1:{server.port}", timeout=10) as client:
        flow = await client.create_flow(unique("sdk"))
        run = await client.create_flow_run(flow.flow_id)
        await client.set_flow_run_state(run.flow_run_id, runwire.proposed_state("RUNNING"))
        made = await client.create_task_run(run.flow_run_id, "step", tags=["a"])
        renamed = await client.update_task_run(made.task_run_id, name="first step")
        assert renamed.name == "first step" and list(renamed.raw.tags) == ["a"]
        retagged = await client.update_task_run(made.task_run_id, tags=["b", "c"])
        assert retagged.name == "first step" and list(retagged.raw.tags) == ["b", "c"]
        pause = ST.State(type=ST.STATE_TYPE_PAUSED)
        pause.state_details.run_input_schema.update(
            {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
        )
        await client.set_flow_run_state(run.flow_run_id, pause)
        refused = await client.resume_flow_run(run.flow_run_id, {"n": "one"})
        assert refused.status == "REJECT" and "'one' is not of type 'integer'" in refused.reason
        resumed = await client.resume_flow_run(run.flow_run_id, {"n": 1})
        assert resumed.status == "ACCEPT" and resumed.state is not None
        assert resumed.state.type == runwire.StateType.RUNNING
