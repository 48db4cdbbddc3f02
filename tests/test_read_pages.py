"""Pages of runs, task runs and logs carry every field as it was written, and the same message a
read by id returns: lists and reads convert rows along their own paths, so they are compared
field by field on runs that set every field (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2

from runwire.v1 import filters_pb2 as f
from runwire.v1 import (
    flow_run_pb2,
    flow_run_service_pb2,
    log_pb2,
    log_service_pb2,
    state_pb2,
    task_run_pb2,
    task_run_service_pb2,
)
from tests.helpers import make_flow, ts, unique

# Fields computed at the moment of the read: a list and a later read differ in them.
MOMENTARY = ("estimated_run_time", "estimated_start_time_delta")


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def settled(message: Any) -> Any:
    """A copy without the fields that move with the clock."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in MOMENTARY:
        copy.ClearField(name)
    return copy


def of_flow(flow_id: str) -> f.FlowRunCriteria:
    return f.FlowRunCriteria(
        flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow_id])))
    )


async def test_pages_carry_every_field_written(
    flows: Any, runs: Any, task_runs: Any, logs: Any
) -> None:
    flow = await make_flow(flows)
    scheduled = datetime(2021, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    written: dict[str, flow_run_pb2.FlowRun] = {}
    for n in range(3):
        run = flow_run_pb2.FlowRun(
            flow_id=flow.id,
            name=unique("page"),
            parameters=struct({"n": n, "nested": {"xs": [1, "two", None, True]}}),
            context=struct({"who": "pages"} if n else {}),
            run_config=struct({"image": "python:3.11"}),
            tags=[f"t{n}", "common"],
            labels={"team": "data", "n": str(n)},
            idempotency_key=unique("key"),
            flow_version=f"v{n}",
            work_pool_name="pool",
            work_queue_name="queue",
            infrastructure_pid=f"pid-{n}",
            created_by=flow_run_pb2.CreatedBy(id="u1", type="USER", display_value="User One"),
            empirical_policy=flow_run_pb2.FlowRunPolicy(
                retries=2, retry_delay=duration_pb2.Duration(seconds=3, nanos=500_000_000)
            ),
            state=state_pb2.State(
                type=state_pb2.STATE_TYPE_SCHEDULED,
                name="Later",
                message=f"scheduled {n}",
                state_details=state_pb2.StateDetails(
                    scheduled_time=ts(scheduled + timedelta(minutes=n))
                ),
            ),
        )
        made = await runs.CreateFlowRun(flow_run_service_pb2.CreateFlowRunRequest(flow_run=run))
        written[made.flow_run.id] = run
    first = next(iter(written))
    for state in (
        state_pb2.State(type=state_pb2.STATE_TYPE_PENDING),
        state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING, message="going"),
        state_pb2.State(
            type=state_pb2.STATE_TYPE_COMPLETED,
            result=state_pb2.ResultReference(serializer="json", inline_value=b'{"ok": 1}'),
        ),
    ):
        await runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(flow_run_id=first, state=state)
        )

    listed = (
        await runs.ListFlowRuns(
            flow_run_service_pb2.ListFlowRunsRequest(
                filter=of_flow(flow.id), sort=f.FLOW_RUN_SORT_START_TIME_DESC
            )
        )
    ).flow_runs
    assert sorted(r.id for r in listed) == sorted(written)
    for item in listed:
        sent = written[item.id]
        for name in (
            "flow_id",
            "name",
            "parameters",
            "context",
            "run_config",
            "labels",
            "idempotency_key",
            "flow_version",
            "work_pool_name",
            "work_queue_name",
            "infrastructure_pid",
            "created_by",
        ):
            assert getattr(item, name) == getattr(sent, name), name
        assert sorted(item.tags) == sorted(sent.tags)
        assert item.empirical_policy.retries == 2
        assert item.empirical_policy.retry_delay == sent.empirical_policy.retry_delay
        for name in ("parameters", "context", "run_config", "state", "created", "updated"):
            assert item.HasField(name), name
        got = await runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=item.id))
        assert settled(item) == settled(got.flow_run)
    done = next(r for r in listed if r.id == first)
    assert done.state.type == state_pb2.STATE_TYPE_COMPLETED
    assert done.state.result.inline_value == b'{"ok": 1}'
    assert done.run_count == 1 and done.HasField("start_time") and done.HasField("end_time")
    waiting = next(r for r in listed if r.id != first)
    assert waiting.state.message.startswith("scheduled")
    assert waiting.state.state_details.HasField("scheduled_time")
    assert waiting.next_scheduled_start_time == waiting.state.state_details.scheduled_time

    tasks = []
    for n in range(3):
        task = task_run_pb2.TaskRun(
            flow_run_id=first,
            task_key="step",
            dynamic_key=str(n),
            name=f"step-{n}",
            map_index=n,
            tags=["io", f"n{n}"],
            cache_key=f"cache-{n}",
            cache_expiration=ts(scheduled),
            task_version="1.2",
            empirical_policy=task_run_pb2.TaskRunPolicy(
                retries=1, retry_delays=[duration_pb2.Duration(seconds=5)]
            ),
            task_inputs={
                "x": task_run_pb2.TaskInputList(
                    inputs=[
                        task_run_pb2.TaskInput(
                            input_type=task_run_pb2.TaskInput.INPUT_TYPE_PARAMETER,
                            parameter_name="x",
                        )
                    ]
                ),
                "y": task_run_pb2.TaskInputList(
                    inputs=[
                        task_run_pb2.TaskInput(
                            input_type=task_run_pb2.TaskInput.INPUT_TYPE_TASK_RUN,
                            task_run_id=tasks[-1].id,
                        )
                    ]
                    if tasks
                    else [
                        task_run_pb2.TaskInput(
                            input_type=task_run_pb2.TaskInput.INPUT_TYPE_CONSTANT,
                            constant_type="int",
                        )
                    ]
                ),
            },
            state=state_pb2.State(type=state_pb2.STATE_TYPE_PENDING),
        )
        made_task = await task_runs.CreateTaskRun(
            task_run_service_pb2.CreateTaskRunRequest(task_run=task)
        )
        tasks.append(made_task.task_run)
    listed_tasks = (
        await task_runs.ListTaskRuns(
            task_run_service_pb2.ListTaskRunsRequest(
                filter=task_run_service_pb2.TaskRunCriteria(
                    task_runs=f.TaskRunFilter(
                        flow_run_id=f.StringFilter(any_of=f.StringList(values=[first]))
                    )
                ),
                sort=f.TASK_RUN_SORT_EXPECTED_START_TIME_DESC,
            )
        )
    ).task_runs
    assert [t.id for t in listed_tasks] == [t.id for t in reversed(tasks)]
    for item, made_task in zip(reversed(listed_tasks), tasks, strict=True):
        assert settled(item) == settled(made_task)
        assert dict(item.task_inputs) == dict(made_task.task_inputs)
        got_task = await task_runs.GetTaskRun(
            task_run_service_pb2.GetTaskRunRequest(task_run_id=item.id)
        )
        assert settled(item) == settled(got_task.task_run)

    lines = [
        log_pb2.Log(
            flow_run_id=first,
            task_run_id=tasks[n % 3].id if n % 2 else "",
            name=f"logger.{n}",
            level=10 * (n % 5 + 1),
            message=f"line {n} ünïcode",
            timestamp=ts(scheduled + timedelta(microseconds=n)),
        )
        for n in range(7)
    ]
    await logs.CreateLogs(log_service_pb2.CreateLogsRequest(logs=lines))
    listed_logs = (
        await logs.ListLogs(
            log_service_pb2.ListLogsRequest(
                filter=f.LogFilter(flow_run_id=f.StringFilter(any_of=f.StringList(values=[first]))),
                sort=f.LOG_SORT_TIMESTAMP_ASC,
            )
        )
    ).logs
    assert len(listed_logs) == len(lines)
    for item, line in zip(listed_logs, lines, strict=True):
        assert item.id
        line_with_id = log_pb2.Log()
        line_with_id.CopyFrom(line)
        line_with_id.id = item.id
        assert item == line_with_id


async def test_a_page_read_again_shows_every_change_since(
    flows: Any, runs: Any, task_runs: Any
) -> None:
    """The server keeps the messages of finished runs between reads: a change of any kind, to
    the run, its tags or its state, shows in the next page and read, and a running run's
    estimates move with the clock."""
    flow = await make_flow(flows)

    async def page() -> dict[str, flow_run_pb2.FlowRun]:
        listed = await runs.ListFlowRuns(
            flow_run_service_pb2.ListFlowRunsRequest(filter=of_flow(flow.id))
        )
        return {r.id: r for r in listed.flow_runs}

    async def get(run_id: str) -> flow_run_pb2.FlowRun:
        got = await runs.GetFlowRun(flow_run_service_pb2.GetFlowRunRequest(flow_run_id=run_id))
        return got.flow_run

    async def set_state(run_id: str, state_type: Any, *, force: bool = False) -> None:
        await runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(
                flow_run_id=run_id, state=state_pb2.State(type=state_type), force=force
            )
        )

    finished, running = [
        (
            await runs.CreateFlowRun(
                flow_run_service_pb2.CreateFlowRunRequest(
                    flow_run=flow_run_pb2.FlowRun(flow_id=flow.id, name=name, tags=["a"])
                )
            )
        ).flow_run.id
        for name in ("finished", "running")
    ]
    for state_type in (state_pb2.STATE_TYPE_RUNNING, state_pb2.STATE_TYPE_COMPLETED):
        await set_state(finished, state_type)
    await set_state(running, state_pb2.STATE_TYPE_RUNNING)
    first = await page()
    assert first[finished] == (await page())[finished] == await get(finished)

    await runs.UpdateFlowRun(
        flow_run_service_pb2.UpdateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(id=finished, name="renamed", tags=["a", "b"]),
            update_mask=field_mask_pb2.FieldMask(paths=["name", "tags"]),
        )
    )
    renamed = await page()
    assert renamed[finished].name == "renamed" and sorted(renamed[finished].tags) == ["a", "b"]
    assert (await get(finished)).name == "renamed"
    assert renamed[running].estimated_run_time.ToTimedelta() > timedelta(0)
    later = (await get(running)).estimated_run_time
    assert later.ToTimedelta() > renamed[running].estimated_run_time.ToTimedelta()

    await set_state(finished, state_pb2.STATE_TYPE_FAILED, force=True)
    failed = await page()
    assert failed[finished].state.type == state_pb2.STATE_TYPE_FAILED
    assert failed[finished].state.id != renamed[finished].state.id
    assert (await get(finished)).state.type == state_pb2.STATE_TYPE_FAILED

    task = (
        await task_runs.CreateTaskRun(
            task_run_service_pb2.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(
                    flow_run_id=running,
                    task_key="t",
                    dynamic_key="0",
                    state=state_pb2.State(type=state_pb2.STATE_TYPE_COMPLETED),
                )
            )
        )
    ).task_run
    of_run = task_run_service_pb2.ListTaskRunsRequest(
        filter=task_run_service_pb2.TaskRunCriteria(
            task_runs=f.TaskRunFilter(
                flow_run_id=f.StringFilter(any_of=f.StringList(values=[running]))
            )
        )
    )
    before = (await task_runs.ListTaskRuns(of_run)).task_runs
    assert [t.state.type for t in before] == [state_pb2.STATE_TYPE_COMPLETED]
    await task_runs.SetTaskRunState(
        task_run_service_pb2.SetTaskRunStateRequest(
            task_run_id=task.id, state=state_pb2.State(type=state_pb2.STATE_TYPE_FAILED), force=True
        )
    )
    after = (await task_runs.ListTaskRuns(of_run)).task_runs
    assert [t.state.type for t in after] == [state_pb2.STATE_TYPE_FAILED]
    got_task = await task_runs.GetTaskRun(
        task_run_service_pb2.GetTaskRunRequest(task_run_id=task.id)
    )
    assert got_task.task_run.state.type == state_pb2.STATE_TYPE_FAILED


async def test_pages_through_runs_that_share_their_sort_value(flows: Any, runs: Any) -> None:
    """Runs scheduled for the same moment share their start; small pages in either order give
    each exactly once, ties in id order (a page's token compares the value, then the id)."""
    flow = await make_flow(flows)
    at = ts(datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC))
    made = []
    for _ in range(7):
        run = flow_run_pb2.FlowRun(
            flow_id=flow.id,
            state=state_pb2.State(
                type=state_pb2.STATE_TYPE_SCHEDULED,
                state_details=state_pb2.StateDetails(scheduled_time=at),
            ),
        )
        created = await runs.CreateFlowRun(flow_run_service_pb2.CreateFlowRunRequest(flow_run=run))
        made.append(created.flow_run.id)
    for sort, expected in (
        (f.FLOW_RUN_SORT_START_TIME_ASC, sorted(made)),
        (f.FLOW_RUN_SORT_START_TIME_DESC, sorted(made, reverse=True)),
    ):
        seen: list[str] = []
        token = ""
        while True:
            listed = await runs.ListFlowRuns(
                flow_run_service_pb2.ListFlowRunsRequest(
                    filter=of_flow(flow.id), sort=sort, page_size=2, page_token=token
                )
            )
            seen += [r.id for r in listed.flow_runs]
            token = listed.next_page_token
            if not token:
                break
        assert seen == expected, sort
