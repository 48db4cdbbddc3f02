"""FlowService and DeploymentService over gRPC."""

from __future__ import annotations

import asyncio
import uuid

import grpc

import runwire
from runwire.v1 import deployment_pb2, flow_pb2
from runwire.v1 import deployment_service_pb2 as dpb
from runwire.v1 import filters_pb2 as f
from runwire.v1 import flow_run_service_pb2 as rpb
from runwire.v1 import flow_service_pb2 as pb
from tests.helpers import expect_error, make_flow, make_run, unique

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


async def test_create_flow_is_get_or_create(flows):
    name = unique("flow")
    first = await flows.CreateFlow(
        pb.CreateFlowRequest(
            flow=flow_pb2.Flow(name=name, tags=["b", "a", "b"], labels={"team": "data"})
        )
    )
    again = await flows.CreateFlow(pb.CreateFlowRequest(flow=flow_pb2.Flow(name=name)))
    assert first.created and not again.created
    assert again.flow.id == first.flow.id
    assert sorted(first.flow.tags) == ["a", "b"]
    assert first.flow.labels["team"] == "data"
    assert first.flow.created.seconds > 0


async def test_create_flow_on_an_existing_name_adds_the_tags_it_lacks(flows):
    name = unique("flow")
    first = await make_flow(flows, name, tags=["b", "a"], labels={"team": "data"})
    again = await flows.CreateFlow(
        pb.CreateFlowRequest(
            flow=flow_pb2.Flow(name=name, tags=["c", "a"], labels={"team": "other"})
        )
    )
    assert not again.created
    assert again.flow.id == first.id
    assert list(again.flow.tags) == ["a", "b", "c"]
    assert dict(again.flow.labels) == {"team": "data"}  # only tags are merged
    assert again.flow.created == first.created
    assert again.flow.updated.ToDatetime() > first.updated.ToDatetime()
    got = await flows.GetFlow(pb.GetFlowRequest(flow_id=first.id))
    assert got.flow == again.flow

    # Fewer tags, or none, remove nothing, and a call that adds none leaves `updated` alone.
    for tags in (["b"], []):
        same = await flows.CreateFlow(
            pb.CreateFlowRequest(flow=flow_pb2.Flow(name=name, tags=tags))
        )
        assert not same.created
        assert same.flow == again.flow

    by_tag = await flows.ListFlows(
        pb.ListFlowsRequest(
            flows=f.FlowFilter(tags=f.TagsFilter(all_of=f.StringList(values=["c"])))
        )
    )
    assert first.id in [x.id for x in by_tag.flows]


async def test_the_python_clients_create_flow_adds_tags_to_an_existing_flow(server):
    name = unique("flow")
    async with runwire.AsyncClient(f"127.0.0.1:{server.port}", timeout=10) as client:
        first = await client.create_flow(name, tags=["nightly"])
        again = await client.create_flow(name, tags=["etl", "nightly"])
        assert again.flow_id == first.flow_id
        assert sorted(again.tags) == ["etl", "nightly"]
        assert sorted((await client.get_flow(first.flow_id)).tags) == ["etl", "nightly"]


async def test_adding_tags_past_the_limit_changes_nothing(flows):
    name = unique("flow")
    first = await make_flow(flows, name, tags=[f"old-{i}" for i in range(60)])
    refused = await expect_error(
        flows.CreateFlow(
            pb.CreateFlowRequest(
                flow=flow_pb2.Flow(name=name, tags=[f"new-{i}" for i in range(41)])
            )
        ),
        INVALID,
        "flow.tags",
    )
    assert "101 tags" in refused.message
    got = await flows.GetFlow(pb.GetFlowRequest(flow_id=first.id))
    assert got.flow == first
    up_to = await flows.CreateFlow(
        pb.CreateFlowRequest(flow=flow_pb2.Flow(name=name, tags=[f"new-{i}" for i in range(40)]))
    )
    assert len(up_to.flow.tags) == 100


async def test_concurrent_creates_of_one_name_keep_every_tag(flows):
    name = unique("flow")

    async def race(tag_sets: list[list[str]]) -> list[pb.CreateFlowResponse]:
        answers = await asyncio.gather(
            *(
                flows.CreateFlow(pb.CreateFlowRequest(flow=flow_pb2.Flow(name=name, tags=tags)))
                for tags in tag_sets
            )
        )
        assert len({answer.flow.id for answer in answers}) == 1
        for tags, answer in zip(tag_sets, answers, strict=True):
            assert set(tags) <= set(answer.flow.tags)
        return answers

    # First the calls race to create the flow, then to add tags to it: one tag new to the flow
    # that all of them add, and one of each call's own.
    created = await race([["first", f"first-{i}"] for i in range(20)])
    assert sum(answer.created for answer in created) == 1
    added = await race([["later", f"later-{i}"] for i in range(20)])
    assert not any(answer.created for answer in added)
    got = await flows.GetFlow(pb.GetFlowRequest(flow_id=created[0].flow.id))
    assert set(got.flow.tags) == {
        "first",
        "later",
        *(f"first-{i}" for i in range(20)),
        *(f"later-{i}" for i in range(20)),
    }


async def test_create_flow_requires_a_name(flows):
    await expect_error(
        flows.CreateFlow(pb.CreateFlowRequest(flow=flow_pb2.Flow())), INVALID, "flow.name"
    )
    await expect_error(
        flows.CreateFlow(pb.CreateFlowRequest(flow=flow_pb2.Flow(name="x" * 256))),
        INVALID,
        "flow.name",
    )
    await expect_error(
        flows.CreateFlow(pb.CreateFlowRequest(flow=flow_pb2.Flow(name="ok", tags=[""]))),
        INVALID,
        "flow.tags[0]",
    )


async def test_get_flow_by_id_and_name(flows):
    flow = await make_flow(flows)
    got = await flows.GetFlow(pb.GetFlowRequest(flow_id=flow.id))
    assert got.flow == flow
    by_name = await flows.GetFlowByName(pb.GetFlowByNameRequest(name=flow.name))
    assert by_name.flow == flow


async def test_get_flow_errors(flows):
    await expect_error(flows.GetFlow(pb.GetFlowRequest(flow_id="nope")), INVALID, "flow_id")
    await expect_error(flows.GetFlow(pb.GetFlowRequest()), INVALID, "flow_id")
    missing = await expect_error(
        flows.GetFlow(pb.GetFlowRequest(flow_id=str(uuid.uuid4()))), NOT_FOUND
    )
    assert missing.reason == "RESOURCE_NOT_FOUND"
    await expect_error(flows.GetFlowByName(pb.GetFlowByNameRequest(name=unique())), NOT_FOUND)
    await expect_error(flows.GetFlowByName(pb.GetFlowByNameRequest()), INVALID, "name")


async def test_list_flows_filters_sorts_and_pages(flows, runs):
    tag = unique("tag")
    names = [unique(f"list{i}") for i in range(5)]
    created = [await make_flow(flows, n, tags=[tag]) for n in names]
    tagged = f.FlowFilter(tags=f.TagsFilter(all_of=f.StringList(values=[tag])))

    listed = await flows.ListFlows(pb.ListFlowsRequest(flows=tagged, sort=f.FLOW_SORT_NAME_DESC))
    assert [x.name for x in listed.flows] == sorted(names, reverse=True)
    assert listed.next_page_token == ""

    seen: list[str] = []
    token = ""
    while True:
        page = await flows.ListFlows(
            pb.ListFlowsRequest(flows=tagged, page_size=2, page_token=token)
        )
        seen += [x.name for x in page.flows]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(names)

    by_name = await flows.ListFlows(
        pb.ListFlowsRequest(flows=f.FlowFilter(name=f.StringFilter(like=names[2][-6:].upper())))
    )
    assert [x.id for x in by_name.flows] == [created[2].id]

    await make_run(runs, created[0].id)
    with_runs = await flows.ListFlows(
        pb.ListFlowsRequest(flows=tagged, flow_runs=f.FlowRunFilter(name=f.StringFilter(like="-")))
    )
    assert [x.id for x in with_runs.flows] == [created[0].id]

    await expect_error(flows.ListFlows(pb.ListFlowsRequest(page_size=-1)), INVALID, "page_size")
    await expect_error(flows.ListFlows(pb.ListFlowsRequest(sort=99)), INVALID, "sort")


async def test_delete_flow_removes_its_runs(flows, runs):
    flow = await make_flow(flows)
    run = await make_run(runs, flow.id)
    await flows.DeleteFlow(pb.DeleteFlowRequest(flow_id=flow.id))
    await expect_error(flows.GetFlow(pb.GetFlowRequest(flow_id=flow.id)), NOT_FOUND)
    await expect_error(runs.GetFlowRun(rpb.GetFlowRunRequest(flow_run_id=run.id)), NOT_FOUND)
    await expect_error(flows.DeleteFlow(pb.DeleteFlowRequest(flow_id=flow.id)), NOT_FOUND)
    await expect_error(flows.DeleteFlow(pb.DeleteFlowRequest(flow_id="1")), INVALID, "flow_id")


async def test_deployments(flows, deployments, runs):
    flow = await make_flow(flows)
    name = unique("dep")
    created = await deployments.CreateDeployment(
        dpb.CreateDeploymentRequest(
            deployment=deployment_pb2.Deployment(
                name=name,
                flow_id=flow.id,
                tags=["prod"],
                work_pool_name="pool-a",
                work_queue_name="q1",
            )
        )
    )
    dep = created.deployment
    assert dep.flow_id == flow.id and dep.work_pool_name == "pool-a" and list(dep.tags) == ["prod"]
    got = await deployments.GetDeployment(dpb.GetDeploymentRequest(deployment_id=dep.id))
    assert got.deployment == dep

    await expect_error(
        deployments.CreateDeployment(
            dpb.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(name=name, flow_id=flow.id)
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    await expect_error(
        deployments.CreateDeployment(
            dpb.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(name=name, flow_id=str(uuid.uuid4()))
            )
        ),
        NOT_FOUND,
    )
    await expect_error(
        deployments.CreateDeployment(
            dpb.CreateDeploymentRequest(deployment=deployment_pb2.Deployment(flow_id=flow.id))
        ),
        INVALID,
        "deployment.name",
    )
    await expect_error(
        deployments.GetDeployment(dpb.GetDeploymentRequest(deployment_id=str(uuid.uuid4()))),
        NOT_FOUND,
    )
    await expect_error(
        deployments.GetDeployment(dpb.GetDeploymentRequest()), INVALID, "deployment_id"
    )

    listed = await deployments.ListDeployments(
        dpb.ListDeploymentsRequest(
            flows=f.FlowFilter(id=f.StringFilter(any_of=f.StringList(values=[flow.id])))
        )
    )
    assert [d.id for d in listed.deployments] == [dep.id]
    by_either_name = await deployments.ListDeployments(
        dpb.ListDeploymentsRequest(
            deployments=f.DeploymentFilter(
                flow_or_deployment_name=f.StringFilter(like=flow.name),
                paused=f.BoolFilter(eq=False),
            )
        )
    )
    assert [d.id for d in by_either_name.deployments] == [dep.id]

    run = await make_run(runs, flow.id, deployment_id=dep.id)
    assert run.deployment_id == dep.id
    await deployments.DeleteDeployment(dpb.DeleteDeploymentRequest(deployment_id=dep.id))
    after = await runs.GetFlowRun(rpb.GetFlowRunRequest(flow_run_id=run.id))
    assert after.flow_run.deployment_id == ""
    await expect_error(
        deployments.DeleteDeployment(dpb.DeleteDeploymentRequest(deployment_id=dep.id)), NOT_FOUND
    )
