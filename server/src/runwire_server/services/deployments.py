"""Deployments: create, lookups, lists and deletes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from runwire.v1 import filters_pb2 as f
from runwire_server import records
from runwire_server.clock import now
from runwire_server.errors import AlreadyExists
from runwire_server.orchestration.context import CollisionStrategy
from runwire_server.pages import Page, PageRequest, PageTokens
from runwire_server.storage import filters
from runwire_server.storage import models as m
from runwire_server.storage.database import Database
from runwire_server.storage.paging import SortKey, choose_sort, fetch_page
from runwire_server.storage.rows import (
    ensure_work_queue,
    get_or_404,
    insert_or_get,
    require_exists,
    set_tags,
)


@dataclass(frozen=True)
class NewDeployment:
    name: str
    flow_id: uuid.UUID
    tags: list[str] = field(default_factory=list)
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    paused: bool = False
    concurrency_limit: int | None = None
    collision_strategy: CollisionStrategy = CollisionStrategy.ENQUEUE


def create_deployment(session: Session, new: NewDeployment) -> m.Deployment:
    require_exists(session, m.Flow, new.flow_id, "flow")
    ensure_work_queue(session, new.work_pool_name, new.work_queue_name)

    def make() -> m.Deployment:
        at = now()
        deployment = m.Deployment(
            name=new.name,
            flow_id=new.flow_id,
            work_pool_name=new.work_pool_name,
            work_queue_name=new.work_queue_name,
            paused=new.paused,
            concurrency_limit=new.concurrency_limit,
            collision_strategy=new.collision_strategy.value,
            created=at,
            updated=at,
        )
        set_tags(deployment, m.DeploymentTag, new.tags)
        return deployment

    def find() -> m.Deployment | None:
        return session.scalars(
            select(m.Deployment).where(
                m.Deployment.flow_id == new.flow_id, m.Deployment.name == new.name
            )
        ).one_or_none()

    deployment, created = insert_or_get(session, make, find)
    if not created:
        raise AlreadyExists("deployment", new.name)
    return deployment


def get_deployment(session: Session, deployment_id: uuid.UUID) -> m.Deployment:
    return get_or_404(session, m.Deployment, deployment_id, "deployment")


_D = m.Deployment
_SORTS = {
    f.DEPLOYMENT_SORT_UNSPECIFIED: SortKey(_D.id, False, _D.name, lambda r: r.name),
    f.DEPLOYMENT_SORT_NAME_ASC: SortKey(_D.id, False, _D.name, lambda r: r.name),
    f.DEPLOYMENT_SORT_NAME_DESC: SortKey(_D.id, True, _D.name, lambda r: r.name),
    f.DEPLOYMENT_SORT_CREATED_DESC: SortKey(_D.id, True, _D.created, lambda r: r.created),
    f.DEPLOYMENT_SORT_UPDATED_DESC: SortKey(_D.id, True, _D.updated, lambda r: r.updated),
}


def list_deployments(
    session: Session,
    *,
    deployments: f.DeploymentFilter,
    flows: f.FlowFilter,
    sort: int,
    page: PageRequest,
    tokens: PageTokens,
) -> Page[m.Deployment]:
    statement = select(_D)
    own = filters.deployment_clause(deployments, "deployments")
    if own is not None:
        statement = statement.where(own)
    flow_clause = filters.flow_clause(flows, "flows")
    if flow_clause is not None:
        statement = statement.where(exists(select(1).where(m.Flow.id == _D.flow_id, flow_clause)))
    return fetch_page(session, statement, choose_sort(_SORTS, sort), page, tokens)


def delete_deployment(session: Session, deployment_id: uuid.UUID) -> None:
    session.delete(get_deployment(session, deployment_id))


def record(row: m.Deployment) -> records.Deployment:
    return records.Deployment(
        id=row.id,
        name=row.name,
        flow_id=row.flow_id,
        tags=row.tags,
        work_pool_name=row.work_pool_name,
        work_queue_name=row.work_queue_name,
        paused=row.paused,
        concurrency_limit=row.concurrency_limit,
        collision_strategy=row.collision_strategy,
        created=row.created,
        updated=row.updated,
    )


class DeploymentService:
    """Deployments, each call in a transaction of its own."""

    def __init__(self, db: Database, tokens: PageTokens) -> None:
        self._db = db
        self._tokens = tokens

    async def create(self, new: NewDeployment) -> records.Deployment:
        return await self._db.write(lambda s: record(create_deployment(s, new)))

    async def get(self, deployment_id: uuid.UUID) -> records.Deployment:
        return await self._db.read(lambda s: record(get_deployment(s, deployment_id)))

    async def list_page(
        self, *, deployments: f.DeploymentFilter, flows: f.FlowFilter, sort: int, page: PageRequest
    ) -> Page[records.Deployment]:
        return await self._db.read(
            lambda s: list_deployments(
                s, deployments=deployments, flows=flows, sort=sort, page=page, tokens=self._tokens
            ).map(record)
        )

    async def delete(self, deployment_id: uuid.UUID) -> None:
        await self._db.write(lambda s: delete_deployment(s, deployment_id))
