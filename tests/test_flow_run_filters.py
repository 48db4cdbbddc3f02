"""ListFlowRuns and CountFlowRuns: every filter, operator, sort, and the paging rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import pytest_asyncio
from google.protobuf import timestamp_pb2

from runwire.v1 import deployment_pb2, flow_run_pb2
from runwire.v1 import deployment_service_pb2 as dpb
from runwire.v1 import filters_pb2 as f
from runwire.v1 import flow_run_service_pb2 as pb
from runwire.v1 import state_pb2 as ST
from tests.helpers import expect_error, make_flow, make_run, ts, unique

INVALID = grpc.StatusCode.INVALID_ARGUMENT
T0 = datetime(2032, 3, 1, tzinfo=UTC)


def strings(*values: str) -> f.StringList:
    return f.StringList(values=list(values))


class Dataset:
    """Six runs under one flow with known fields; every query is scoped to that flow."""

    def __init__(self, runs, flow, other_flow, dep, named):
        self.runs = runs
        self.flow = flow
        self.other_flow = other_flow
        self.dep = dep
        self.named = named  # run name -> run

    def scope(self, criteria: f.FlowRunCriteria | None = None) -> f.FlowRunCriteria:
        out = f.FlowRunCriteria()
        if criteria is not None:
            out.CopyFrom(criteria)
        out.flows.id.any_of.values.append(self.flow.id)
        return out

    async def names(self, criteria=None, sort=f.FLOW_RUN_SORT_NAME_ASC, **kw) -> list[str]:
        response = await self.runs.ListFlowRuns(
            pb.ListFlowRunsRequest(filter=self.scope(criteria), sort=sort, **kw)
        )
        return [r.name for r in response.flow_runs]

    async def where(self, **flow_run_filter) -> list[str]:
        return await self.names(f.FlowRunCriteria(flow_runs=f.FlowRunFilter(**flow_run_filter)))

    async def count(self, criteria=None) -> int:
        return (
            await self.runs.CountFlowRuns(pb.CountFlowRunsRequest(filter=self.scope(criteria)))
        ).count


@pytest_asyncio.fixture(scope="module")
async def data(flows, runs, deployments) -> Dataset:
    flow = await make_flow(flows, tags=["etl"])
    other_flow = await make_flow(flows)
    dep = (
        await deployments.CreateDeployment(
            dpb.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(
                    name=unique("dep"), flow_id=flow.id, tags=["prod"]
                )
            )
        )
    ).deployment

    def scheduled(hours: int) -> ST.State:
        return ST.State(
            type=ST.STATE_TYPE_SCHEDULED,
            state_details=ST.StateDetails(scheduled_time=ts(T0 + timedelta(hours=hours))),
        )

    named = {}
    named["alpha"] = await make_run(
        runs,
        flow.id,
        name="alpha",
        tags=["a", "b"],
        state=scheduled(1),
        work_pool_name="pool-1",
        work_queue_name="fast",
        idempotency_key="key-alpha",
        flow_version="1.0",
    )
    named["bravo"] = await make_run(
        runs,
        flow.id,
        name="bravo",
        tags=["b"],
        state=scheduled(2),
        deployment_id=dep.id,
        work_pool_name="pool-2",
        work_queue_name="slow",
        flow_version="2.0",
    )
    named["charlie"] = await make_run(
        runs,
        flow.id,
        name="charlie",
        state=scheduled(3),
        created_by=flow_run_pb2.CreatedBy(id="auto-1", type="AUTOMATION"),
    )
    named["delta"] = await make_run(runs, flow.id, name="delta", tags=["c"], state=scheduled(4))
    named["echo"] = await make_run(
        runs, flow.id, name="echo", state=scheduled(5), parent_task_run_id=str(uuid.uuid4())
    )
    named["foxtrot_x"] = await make_run(runs, flow.id, name="foxtrot_x", state=scheduled(6))

    for name, steps in {
        "alpha": [ST.STATE_TYPE_PENDING, ST.STATE_TYPE_RUNNING, ST.STATE_TYPE_COMPLETED],
        "bravo": [ST.STATE_TYPE_PENDING, ST.STATE_TYPE_RUNNING],
        "charlie": [ST.STATE_TYPE_FAILED],
    }.items():
        for step in steps:
            await runs.SetFlowRunState(
                # force: these runs are scheduled years ahead; the rules would make them wait.
                pb.SetFlowRunStateRequest(
                    flow_run_id=named[name].id, state=ST.State(type=step), force=True
                )
            )
    await runs.SetFlowRunState(
        pb.SetFlowRunStateRequest(
            flow_run_id=named["delta"].id, state=ST.State(type=ST.STATE_TYPE_SCHEDULED, name="Late")
        )
    )
    await make_run(runs, other_flow.id, name="alpha")  # same name, other flow: never in scope
    return Dataset(runs, flow, other_flow, dep, named)


ALL = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot_x"]


async def test_empty_filter_matches_everything(data):
    assert await data.names() == ALL
    assert await data.count() == 6


async def test_id_filters(data):
    alpha, bravo = data.named["alpha"].id, data.named["bravo"].id
    assert await data.where(id=f.StringFilter(any_of=strings(alpha, bravo))) == ["alpha", "bravo"]
    assert await data.where(id=f.StringFilter(not_any_of=strings(alpha))) == ALL[1:]
    # A present but empty list matches nothing, so a client that filters by a computed list
    # of ids never gets everything by accident.
    assert await data.where(id=f.StringFilter(any_of=strings())) == []
    await expect_error(
        data.runs.ListFlowRuns(
            pb.ListFlowRunsRequest(
                filter=f.FlowRunCriteria(
                    flow_runs=f.FlowRunFilter(id=f.StringFilter(any_of=strings("zz")))
                )
            )
        ),
        INVALID,
        "filter.flow_runs.id.any_of",
    )
    await expect_error(
        data.runs.CountFlowRuns(
            pb.CountFlowRunsRequest(
                filter=f.FlowRunCriteria(flow_runs=f.FlowRunFilter(id=f.StringFilter(like="a")))
            )
        ),
        INVALID,
        "filter.flow_runs.id.like",
    )


async def test_id_prefix_filters(data):
    alpha = data.named["alpha"].id
    # Every whole id is its own prefix, with or without hyphens, in either case.
    assert await data.where(id=f.StringFilter(starts_with=strings(alpha))) == ["alpha"]
    undashed = alpha.replace("-", "").upper()
    assert await data.where(id=f.StringFilter(starts_with=strings(undashed))) == ["alpha"]
    # Runs made together share their first digits (ids are time-ordered): a short prefix finds
    # them all, and the empty prefix every id.
    assert await data.where(id=f.StringFilter(starts_with=strings(alpha[:4]))) == ALL
    assert await data.where(id=f.StringFilter(starts_with=strings(""))) == ALL
    unused = "f" if alpha[0] != "f" else "0"
    assert await data.where(id=f.StringFilter(starts_with=strings(unused))) == []
    for bad in ("01g", alpha + "0"):
        await expect_error(
            data.runs.ListFlowRuns(
                pb.ListFlowRunsRequest(
                    filter=f.FlowRunCriteria(
                        flow_runs=f.FlowRunFilter(id=f.StringFilter(starts_with=strings(bad)))
                    )
                )
            ),
            INVALID,
            "filter.flow_runs.id.starts_with",
        )


async def test_name_filters(data):
    assert await data.where(name=f.StringFilter(any_of=strings("echo", "nope"))) == ["echo"]
    assert await data.where(name=f.StringFilter(like="HAR")) == ["charlie"]
    # like is a literal substring: _ and % are not wildcards.
    assert await data.where(name=f.StringFilter(like="_x")) == ["foxtrot_x"]
    assert await data.where(name=f.StringFilter(starts_with=strings("a", "D"))) == [
        "alpha",
        "delta",
    ]
    assert await data.where(
        name=f.StringFilter(operator=f.FILTER_OPERATOR_OR, any_of=strings("echo"), like="lph")
    ) == ["alpha", "echo"]


async def test_tag_filters(data):
    assert await data.where(tags=f.TagsFilter(all_of=strings("a", "b"))) == ["alpha"]
    assert await data.where(tags=f.TagsFilter(any_of=strings("b", "c"))) == [
        "alpha",
        "bravo",
        "delta",
    ]
    assert await data.where(tags=f.TagsFilter(is_null=True)) == ["charlie", "echo", "foxtrot_x"]
    assert await data.where(tags=f.TagsFilter(is_null=False)) == ["alpha", "bravo", "delta"]
    assert await data.where(tags=f.TagsFilter(all_of=strings())) == ALL


async def test_state_filters(data):
    def types(*values):
        return f.StateTypeList(values=list(values))

    assert await data.where(
        state=f.StateFilter(type=f.StateTypeFilter(any_of=types(ST.STATE_TYPE_RUNNING)))
    ) == ["bravo"]
    assert await data.where(
        state=f.StateFilter(type=f.StateTypeFilter(not_any_of=types(ST.STATE_TYPE_SCHEDULED)))
    ) == ["alpha", "bravo", "charlie"]
    assert await data.where(state=f.StateFilter(name=f.StringFilter(any_of=strings("Late")))) == [
        "delta"
    ]
    # Both any_of and not_any_of apply (the reference silently dropped the type filter).
    assert await data.where(
        state=f.StateFilter(
            type=f.StateTypeFilter(
                any_of=types(ST.STATE_TYPE_SCHEDULED, ST.STATE_TYPE_FAILED),
                not_any_of=types(ST.STATE_TYPE_FAILED),
            )
        )
    ) == ["delta", "echo", "foxtrot_x"]
    assert await data.where(
        state=f.StateFilter(
            operator=f.FILTER_OPERATOR_OR,
            type=f.StateTypeFilter(any_of=types(ST.STATE_TYPE_FAILED)),
            name=f.StringFilter(any_of=strings("Late")),
        )
    ) == ["charlie", "delta"]
    await expect_error(
        data.runs.ListFlowRuns(
            pb.ListFlowRunsRequest(
                filter=f.FlowRunCriteria(
                    flow_runs=f.FlowRunFilter(
                        state=f.StateFilter(type=f.StateTypeFilter(any_of=types(0)))
                    )
                )
            )
        ),
        INVALID,
        "filter.flow_runs.state.type.any_of",
    )


async def test_field_filters(data):
    assert await data.where(deployment_id=f.StringFilter(any_of=strings(data.dep.id))) == ["bravo"]
    assert await data.where(deployment_id=f.StringFilter(is_null=False)) == ["bravo"]
    assert await data.where(work_queue_name=f.StringFilter(any_of=strings("fast"))) == ["alpha"]
    assert await data.where(work_pool_name=f.StringFilter(is_null=False)) == ["alpha", "bravo"]
    assert await data.where(flow_version=f.StringFilter(any_of=strings("2.0"))) == ["bravo"]
    assert await data.where(idempotency_key=f.StringFilter(any_of=strings("key-alpha"))) == [
        "alpha"
    ]
    assert (
        await data.where(idempotency_key=f.StringFilter(not_any_of=strings("key-alpha"))) == ALL[1:]
    )
    assert await data.where(created_by_type=f.StringFilter(any_of=strings("AUTOMATION"))) == [
        "charlie"
    ]
    assert await data.where(created_by_id=f.StringFilter(is_null=True)) == [
        n for n in ALL if n != "charlie"
    ]
    assert await data.where(parent_task_run_id=f.StringFilter(is_null=False)) == ["echo"]
    parent = data.named["echo"].parent_task_run_id
    assert await data.where(parent_task_run_id=f.StringFilter(any_of=strings(parent))) == ["echo"]


async def test_time_filters(data):
    def at(hours: float) -> timestamp_pb2.Timestamp:
        return ts(T0 + timedelta(hours=hours))

    assert await data.where(expected_start_time=f.TimeFilter(after=at(2), before=at(4))) == [
        "bravo",
        "charlie",
        "delta",
    ]
    assert await data.where(next_scheduled_start_time=f.TimeFilter(before=at(4.5))) == ["delta"]
    assert await data.where(start_time=f.TimeFilter(is_null=False)) == ["alpha", "bravo", "charlie"]
    assert await data.where(end_time=f.TimeFilter(is_null=False)) == ["alpha", "charlie"]
    # start_time compares the expected start for runs that have not started.
    # alpha, bravo and charlie started now, years before their schedule.
    assert await data.where(start_time=f.TimeFilter(after=at(4))) == ["delta", "echo", "foxtrot_x"]
    assert await data.where(
        start_time=f.TimeFilter(after=at(4.5)), end_time=f.TimeFilter(is_null=True)
    ) == ["echo", "foxtrot_x"]


async def test_related_object_filters(data):
    by_flow = f.FlowRunCriteria(
        flows=f.FlowFilter(name=f.StringFilter(any_of=strings(data.flow.name)))
    )
    assert await data.names(by_flow) == ALL
    flow_tag = f.FlowRunCriteria(flows=f.FlowFilter(tags=f.TagsFilter(all_of=strings("etl"))))
    assert await data.count(flow_tag) == 6
    dep_tag = f.FlowRunCriteria(
        deployments=f.DeploymentFilter(tags=f.TagsFilter(all_of=strings("prod")))
    )
    assert await data.names(dep_tag) == ["bravo"]
    pool = f.FlowRunCriteria(
        work_pools=f.WorkPoolFilter(name=f.StringFilter(any_of=strings("pool-1")))
    )
    assert await data.names(pool) == ["alpha"]
    queue = f.FlowRunCriteria(
        work_queues=f.WorkQueueFilter(name=f.StringFilter(starts_with=strings("SL")))
    )
    assert await data.names(queue) == ["bravo"]
    flows_without_deployment = f.FlowRunCriteria(
        flows=f.FlowFilter(deployment=f.ExistsFilter(exists=False))
    )
    assert await data.count(flows_without_deployment) == 0
    # An empty related filter does not drop runs that lack the related object.
    assert await data.count(f.FlowRunCriteria(deployments=f.DeploymentFilter())) == 6
    # Criteria across objects are combined with AND.
    both = f.FlowRunCriteria(
        flow_runs=f.FlowRunFilter(tags=f.TagsFilter(any_of=strings("b"))),
        deployments=dep_tag.deployments,
    )
    assert await data.names(both) == ["bravo"]


async def test_operator_or_across_fields(data):
    either = f.FlowRunFilter(
        operator=f.FILTER_OPERATOR_OR,
        name=f.StringFilter(any_of=strings("echo")),
        tags=f.TagsFilter(any_of=strings("c")),
    )
    assert await data.names(f.FlowRunCriteria(flow_runs=either)) == ["delta", "echo"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        (f.FLOW_RUN_SORT_UNSPECIFIED, list(reversed(ALL))),
        (f.FLOW_RUN_SORT_ID_DESC, list(reversed(ALL))),
        (f.FLOW_RUN_SORT_ID_ASC, ALL),
        (f.FLOW_RUN_SORT_NAME_DESC, list(reversed(ALL))),
        (f.FLOW_RUN_SORT_EXPECTED_START_TIME_ASC, ALL),
        (f.FLOW_RUN_SORT_EXPECTED_START_TIME_DESC, list(reversed(ALL))),
        (
            f.FLOW_RUN_SORT_NEXT_SCHEDULED_START_TIME_ASC,
            ["delta", "echo", "foxtrot_x", "alpha", "bravo", "charlie"],
        ),
        (
            f.FLOW_RUN_SORT_END_TIME_DESC,
            ["charlie", "alpha", "foxtrot_x", "echo", "delta", "bravo"],
        ),
    ],
)
async def test_sorts(data, sort, expected):
    assert await data.names(sort=sort) == expected
    # Paging one run at a time gives the same order, missing values last.
    paged, token = [], ""
    while True:
        response = await data.runs.ListFlowRuns(
            pb.ListFlowRunsRequest(filter=data.scope(), sort=sort, page_size=1, page_token=token)
        )
        paged += [r.name for r in response.flow_runs]
        token = response.next_page_token
        if not token:
            break
    assert paged == expected


async def test_start_time_sort_uses_expected_start_for_runs_not_started(data):
    ascending = await data.names(sort=f.FLOW_RUN_SORT_START_TIME_ASC)
    # alpha, bravo and charlie started "now", long before their 2032 schedule.
    assert ascending[:3] == ["alpha", "bravo", "charlie"] and ascending[3:] == [
        "delta",
        "echo",
        "foxtrot_x",
    ]
    assert await data.names(sort=f.FLOW_RUN_SORT_START_TIME_DESC) == list(reversed(ascending))


async def test_limits_offset_and_tokens(data, server):
    assert await data.names(page_size=2) == ["alpha", "bravo"]
    assert await data.names(page_size=2, offset=3) == ["delta", "echo"]

    async def call(**kw):
        return await data.runs.ListFlowRuns(pb.ListFlowRunsRequest(filter=data.scope(), **kw))

    maximum = server.app.settings.max_page_size
    await expect_error(call(page_size=maximum + 1), INVALID, "page_size")
    await expect_error(call(page_size=-1), INVALID, "page_size")
    await expect_error(call(offset=-1), INVALID, "offset")
    await expect_error(call(sort=77), INVALID, "sort")
    await expect_error(call(page_token="garbage"), INVALID, "page_token")
    first = await call(page_size=2, sort=f.FLOW_RUN_SORT_NAME_ASC)
    assert first.next_page_token
    # A token is bound to its query: other filters or sort are refused.
    await expect_error(call(page_size=2, page_token=first.next_page_token), INVALID, "page_token")
    tampered = first.next_page_token[:-2] + ("AA" if first.next_page_token[-2:] != "AA" else "BB")
    await expect_error(
        call(page_size=2, sort=f.FLOW_RUN_SORT_NAME_ASC, page_token=tampered), INVALID, "page_token"
    )
    # The page size may change between pages.
    rest = await call(page_size=10, sort=f.FLOW_RUN_SORT_NAME_ASC, page_token=first.next_page_token)
    assert [r.name for r in rest.flow_runs] == ALL[2:] and rest.next_page_token == ""


async def test_default_page_size_is_the_configured_default(server_factory, flows):
    async with server_factory(default_page_size=3, max_page_size=5) as small:
        from runwire.v1 import (
            flow_pb2,
            flow_run_service_pb2_grpc,
            flow_service_pb2,
            flow_service_pb2_grpc,
        )

        async with grpc.aio.insecure_channel(f"127.0.0.1:{small.port}") as ch:
            stub = flow_run_service_pb2_grpc.FlowRunServiceStub(ch)
            flow = (
                await flow_service_pb2_grpc.FlowServiceStub(ch).CreateFlow(
                    flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name="f"))
                )
            ).flow
            for _ in range(4):
                await stub.CreateFlowRun(
                    pb.CreateFlowRunRequest(flow_run=flow_run_pb2.FlowRun(flow_id=flow.id))
                )
            page = await stub.ListFlowRuns(pb.ListFlowRunsRequest())
            assert len(page.flow_runs) == 3 and page.next_page_token
            await expect_error(
                stub.ListFlowRuns(pb.ListFlowRunsRequest(page_size=6)), INVALID, "page_size"
            )


async def test_bad_values_in_filters_name_their_field(data):
    async def list_with(flow_run_filter: f.FlowRunFilter):
        return await data.runs.ListFlowRuns(
            pb.ListFlowRunsRequest(filter=f.FlowRunCriteria(flow_runs=flow_run_filter))
        )

    beyond_year_9999 = timestamp_pb2.Timestamp(seconds=10**12)
    await expect_error(
        list_with(f.FlowRunFilter(start_time=f.TimeFilter(before=beyond_year_9999))),
        INVALID,
        "filter.flow_runs.start_time.before",
    )
    await expect_error(
        list_with(f.FlowRunFilter(name=f.StringFilter(like="a\x00b"))),
        INVALID,
        "filter.flow_runs.name.like",
    )
    await expect_error(
        list_with(f.FlowRunFilter(tags=f.TagsFilter(any_of=strings("\x00")))),
        INVALID,
        "filter.flow_runs.tags.any_of",
    )
