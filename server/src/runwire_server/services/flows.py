"""Flows: get-or-create by name (adding tags to a flow that exists), lookups, lists and
deletes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as f
from runwire_server import records
from runwire_server.clock import now
from runwire_server.errors import InvalidArgument, NotFound
from runwire_server.events import outbox
from runwire_server.events.values import RunDeleted
from runwire_server.pages import Page, PageRequest, PageTokens
from runwire_server.storage import filters
from runwire_server.storage import models as m
from runwire_server.storage.database import Database
from runwire_server.storage.paging import SortKey, choose_sort, fetch_page
from runwire_server.storage.rows import get_or_404, insert_or_get, set_tags
from runwire_server.validation import MAX_TAGS


@dataclass(frozen=True)
class NewFlow:
    name: str
    project_name: str | None = None
    storage_type: str | None = None
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def create_flow(session: Session, new: NewFlow) -> tuple[m.Flow, bool]:
    def make() -> m.Flow:
        at = now()
        flow = m.Flow(
            name=new.name,
            project_name=new.project_name,
            storage_type=new.storage_type,
            labels=new.labels,
            created=at,
            updated=at,
        )
        set_tags(flow, m.FlowTag, new.tags)
        return flow

    flow, created = insert_or_get(session, make, lambda: find_by_name(session, new.name))
    if not created:
        flow = add_tags(session, flow, new.tags)
    return flow, created


def add_tags(session: Session, flow: m.Flow, tags: list[str]) -> m.Flow:
    """The flow with the tags it lacks added; it keeps every tag it has, and its other fields."""
    if set(tags) <= set(flow.tags):
        # Nothing removes a flow's tags, so what was read is still there: no lock is needed.
        return flow
    # Locked and read again, so that two calls adding tags at once each see the other's: on
    # PostgreSQL the second waits for the first and then reads its tags (SQLite has one writer).
    locked = session.scalars(
        select(m.Flow)
        .where(m.Flow.id == flow.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if locked is None:  # deleted since it was read
        raise NotFound("flow", flow.name)
    merged = list(dict.fromkeys([*locked.tags, *tags]))
    if len(merged) == len(locked.tags):
        return locked
    if len(merged) > MAX_TAGS:
        raise InvalidArgument(
            "flow.tags",
            f"would give the flow {len(merged)} tags; at most {MAX_TAGS} are allowed",
        )
    set_tags(locked, m.FlowTag, merged)
    locked.updated = now()
    session.flush()
    return locked


def find_by_name(session: Session, name: str) -> m.Flow | None:
    return session.scalars(select(m.Flow).where(m.Flow.name == name)).one_or_none()


def get_flow(session: Session, flow_id: uuid.UUID) -> m.Flow:
    return get_or_404(session, m.Flow, flow_id, "flow")


def get_flow_by_name(session: Session, name: str) -> m.Flow:
    flow = find_by_name(session, name)
    if flow is None:
        raise NotFound("flow", name)
    return flow


_SORTS = {
    f.FLOW_SORT_UNSPECIFIED: SortKey(m.Flow.id, False, m.Flow.name, lambda r: r.name),
    f.FLOW_SORT_NAME_ASC: SortKey(m.Flow.id, False, m.Flow.name, lambda r: r.name),
    f.FLOW_SORT_NAME_DESC: SortKey(m.Flow.id, True, m.Flow.name, lambda r: r.name),
    f.FLOW_SORT_CREATED_DESC: SortKey(m.Flow.id, True, m.Flow.created, lambda r: r.created),
    f.FLOW_SORT_UPDATED_DESC: SortKey(m.Flow.id, True, m.Flow.updated, lambda r: r.updated),
}


def list_flows(
    session: Session,
    *,
    flows: f.FlowFilter,
    flow_runs: f.FlowRunFilter,
    deployments: f.DeploymentFilter,
    sort: int,
    page: PageRequest,
    tokens: PageTokens,
) -> Page[m.Flow]:
    from sqlalchemy import exists

    clauses: list[Any] = [filters.flow_clause(flows, "flows")]
    run_clause = filters.flow_run_clause(flow_runs, "flow_runs")
    if run_clause is not None:
        clauses.append(exists(select(1).where(m.FlowRun.flow_id == m.Flow.id, run_clause)))
    deployment_clause = filters.deployment_clause(deployments, "deployments")
    if deployment_clause is not None:
        clauses.append(
            exists(select(1).where(m.Deployment.flow_id == m.Flow.id, deployment_clause))
        )
    statement = select(m.Flow).where(*[c for c in clauses if c is not None])
    return fetch_page(session, statement, choose_sort(_SORTS, sort), page, tokens)


def delete_flow(session: Session, flow_id: uuid.UUID) -> None:
    flow = get_flow(session, flow_id)
    for run_id in session.scalars(select(m.FlowRun.id).where(m.FlowRun.flow_id == flow_id)):
        outbox.record(session, RunDeleted(run_id))
    session.delete(flow)


def record(row: m.Flow) -> records.Flow:
    return records.Flow(
        id=row.id,
        name=row.name,
        project_name=row.project_name,
        storage_type=row.storage_type,
        tags=row.tags,
        labels=row.labels,
        created=row.created,
        updated=row.updated,
    )


class FlowService:
    """Flows, each call in a transaction of its own."""

    def __init__(self, db: Database, tokens: PageTokens) -> None:
        self._db = db
        self._tokens = tokens

    async def create(self, new: NewFlow) -> tuple[records.Flow, bool]:
        """The flow of that name, made unless it exists; and whether it was made."""

        def work(session: Session) -> tuple[records.Flow, bool]:
            flow, created = create_flow(session, new)
            return record(flow), created

        return await self._db.write(work)

    async def get(self, flow_id: uuid.UUID) -> records.Flow:
        return await self._db.read(lambda s: record(get_flow(s, flow_id)))

    async def get_by_name(self, name: str) -> records.Flow:
        return await self._db.read(lambda s: record(get_flow_by_name(s, name)))

    async def list_page(
        self,
        *,
        flows: f.FlowFilter,
        flow_runs: f.FlowRunFilter,
        deployments: f.DeploymentFilter,
        sort: int,
        page: PageRequest,
    ) -> Page[records.Flow]:
        return await self._db.read(
            lambda s: list_flows(
                s,
                flows=flows,
                flow_runs=flow_runs,
                deployments=deployments,
                sort=sort,
                page=page,
                tokens=self._tokens,
            ).map(record)
        )

    async def delete(self, flow_id: uuid.UUID) -> None:
        await self._db.write(lambda s: delete_flow(s, flow_id))
