"""Filter messages compiled to SQL WHERE clauses.

Every compile function returns None for a filter that sets no criterion (it matches everything),
so related-object EXISTS clauses are only added when they constrain something. Field paths are
carried along so that a bad value is reported against the exact request field.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, exists, false, func, literal, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute

from runwire.v1 import filters_pb2 as f
from runwire_server.errors import InvalidArgument, quote
from runwire_server.ids import require_id
from runwire_server.storage import models as m
from runwire_server.wire_scalars import state_type_from_proto, to_datetime

Clause = ColumnElement[bool]


def combine(operator: int, clauses: Iterable[Clause | None]) -> Clause | None:
    present = [c for c in clauses if c is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return or_(*present) if operator == f.FILTER_OPERATOR_OR else and_(*present)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starts_with(column: Any, prefixes: Iterable[str]) -> Clause:
    """Case-insensitive prefix match against any of `prefixes`, as one IN list per prefix
    length: a thousand prefixes as a thousand LIKEs joined by OR nest deeper than SQLite
    parses (1,000 levels), while the edge keeps lengths within 255 (api.limits)."""
    by_length: dict[int, set[str]] = {}
    for prefix in prefixes:
        by_length.setdefault(len(prefix), set()).add(prefix)
    clauses: list[Clause] = []
    for length, values in sorted(by_length.items()):
        if length == 0:
            return cast(Clause, column.is_not(None))  # every value starts with ""
        # Both sides folded by the database, as ILIKE folds them (Python folds differently).
        folded = [func.lower(literal(value)) for value in sorted(values)]
        clauses.append(func.lower(func.substr(column, 1, length)).in_(folded))
    return or_(*clauses) if clauses else false()


def string_clause(flt: f.StringFilter, column: Any, path: str) -> Clause | None:
    clauses: list[Clause | None] = []
    if flt.HasField("any_of"):
        clauses.append(column.in_(list(flt.any_of.values)) if flt.any_of.values else false())
    if flt.HasField("not_any_of"):
        values = list(flt.not_any_of.values)
        clauses.append(or_(column.is_(None), column.not_in(values)) if values else true())
    if flt.like:
        clauses.append(column.ilike(f"%{_escape_like(flt.like)}%", escape="\\"))
    if flt.HasField("starts_with"):
        clauses.append(_starts_with(column, flt.starts_with.values))
    if flt.HasField("is_null"):
        clauses.append(column.is_(None) if flt.is_null else column.is_not(None))
    return combine(flt.operator, clauses)


_HEX_DIGITS = frozenset("0123456789abcdef")


def _id_prefix_clause(column: Any, prefixes: Iterable[str], path: str) -> Clause:
    """Ids that start with any of `prefixes` (hex digits; hyphens are ignored), as a range of
    the primary key each: "01a2" is every id from 01a20000-... to 01a2ffff-..., so that a
    command line can take the first characters of a time-ordered id and still use the index."""
    clauses: list[Clause] = []
    for prefix in prefixes:
        digits = prefix.replace("-", "").lower()
        if len(digits) > 32 or not _HEX_DIGITS.issuperset(digits):
            raise InvalidArgument(path, f"{quote(prefix)} is not the start of a UUID")
        low, high = uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
        clauses.append(and_(column >= low, column <= high))
    return or_(*clauses) if clauses else false()


def id_clause(flt: f.StringFilter, column: Any, path: str) -> Clause | None:
    """string_clause for id columns: values must be UUIDs, prefixes hex digits; `like` does
    not apply."""
    if flt.like:
        raise InvalidArgument(f"{path}.like", "is not supported on ids")
    clauses: list[Clause | None] = []
    if flt.HasField("starts_with"):
        clauses.append(_id_prefix_clause(column, flt.starts_with.values, f"{path}.starts_with"))
    if flt.HasField("any_of"):
        ids = [require_id(v, f"{path}.any_of") for v in flt.any_of.values]
        clauses.append(column.in_(ids) if ids else false())
    if flt.HasField("not_any_of"):
        ids = [require_id(v, f"{path}.not_any_of") for v in flt.not_any_of.values]
        clauses.append(or_(column.is_(None), column.not_in(ids)) if ids else true())
    if flt.HasField("is_null"):
        clauses.append(column.is_(None) if flt.is_null else column.is_not(None))
    return combine(flt.operator, clauses)


def time_clause(
    flt: f.TimeFilter, column: Any, path: str, *, null_column: Any = None
) -> Clause | None:
    clauses: list[Clause | None] = []
    if flt.HasField("before"):
        clauses.append(column <= to_datetime(flt.before, f"{path}.before"))
    if flt.HasField("after"):
        clauses.append(column >= to_datetime(flt.after, f"{path}.after"))
    if flt.HasField("is_null"):
        target = column if null_column is None else null_column
        clauses.append(target.is_(None) if flt.is_null else target.is_not(None))
    return combine(flt.operator, clauses)


def tags_clause(flt: f.TagsFilter, tag_model: Any, owner_id: Any, path: str) -> Clause | None:
    def has(*criteria: Clause) -> Clause:
        return exists(select(1).where(tag_model.owner_id == owner_id, *criteria))

    clauses: list[Clause | None] = []
    if flt.HasField("all_of"):
        # Counted in one subquery: an EXISTS per tag nests past SQLite's parser limit.
        wanted = set(flt.all_of.values)
        if wanted:
            held = (
                select(func.count())
                .where(tag_model.owner_id == owner_id, tag_model.tag.in_(sorted(wanted)))
                .scalar_subquery()
            )
            clauses.append(held == len(wanted))
        else:
            clauses.append(true())
    if flt.HasField("any_of"):
        values = list(flt.any_of.values)
        clauses.append(has(tag_model.tag.in_(values)) if values else false())
    if flt.HasField("is_null"):
        clauses.append(~has() if flt.is_null else has())
    return combine(flt.operator, clauses)


def state_clause(
    flt: f.StateFilter, type_column: Any, name_column: Any, path: str
) -> Clause | None:
    def types(values: Iterable[int], where: str) -> list[str]:
        return [state_type_from_proto(v, where).value for v in values]

    type_clauses: list[Clause | None] = []
    if flt.type.HasField("any_of"):
        chosen = types(flt.type.any_of.values, f"{path}.type.any_of")
        type_clauses.append(type_column.in_(chosen) if chosen else false())
    if flt.type.HasField("not_any_of"):
        excluded = types(flt.type.not_any_of.values, f"{path}.type.not_any_of")
        type_clauses.append(or_(type_column.is_(None), type_column.not_in(excluded)))
    # Both type criteria always apply together (the reference silently dropped one).
    type_clause = combine(f.FILTER_OPERATOR_AND, type_clauses)
    name_clause = string_clause(flt.name, name_column, f"{path}.name")
    return combine(flt.operator, [type_clause, name_clause])


def bool_clause(flt: f.BoolFilter, column: Any) -> Clause | None:
    return (column == flt.eq) if flt.HasField("eq") else None


def int_clause(flt: f.IntFilter, column: Any) -> Clause | None:
    clauses: list[Clause | None] = []
    if flt.HasField("ge"):
        clauses.append(column >= flt.ge)
    if flt.HasField("le"):
        clauses.append(column <= flt.le)
    return combine(f.FILTER_OPERATOR_AND, clauses)


def _exists(join: Clause, criteria: Clause | None) -> Clause | None:
    return None if criteria is None else exists(select(1).where(join, criteria))


# --- one compile function per filter message -------------------------------------------------


def flow_clause(flt: f.FlowFilter, path: str) -> Clause | None:
    flow = m.Flow
    deployment = None
    if flt.deployment.HasField("exists"):
        has = exists(select(1).where(m.Deployment.flow_id == flow.id))
        deployment = has if flt.deployment.exists else ~has
    return combine(
        flt.operator,
        [
            id_clause(flt.id, flow.id, f"{path}.id"),
            string_clause(flt.name, flow.name, f"{path}.name"),
            tags_clause(flt.tags, m.FlowTag, flow.id, f"{path}.tags"),
            deployment,
        ],
    )


def deployment_clause(flt: f.DeploymentFilter, path: str) -> Clause | None:
    d = m.Deployment
    either_name = None
    if flt.HasField("flow_or_deployment_name"):
        own = string_clause(flt.flow_or_deployment_name, d.name, path)
        flows = string_clause(flt.flow_or_deployment_name, m.Flow.name, path)
        if own is not None and flows is not None:
            either_name = or_(own, exists(select(1).where(m.Flow.id == d.flow_id, flows)))
    return combine(
        flt.operator,
        [
            id_clause(flt.id, d.id, f"{path}.id"),
            string_clause(flt.name, d.name, f"{path}.name"),
            either_name,
            bool_clause(flt.paused, d.paused),
            tags_clause(flt.tags, m.DeploymentTag, d.id, f"{path}.tags"),
            string_clause(flt.work_queue_name, d.work_queue_name, f"{path}.work_queue_name"),
            string_clause(flt.work_pool_name, d.work_pool_name, f"{path}.work_pool_name"),
        ],
    )


def flow_run_clause(flt: f.FlowRunFilter, path: str) -> Clause | None:
    r = m.FlowRun
    parent = None
    parent_criteria = id_clause(
        flt.parent_flow_run_id, m.TaskRun.flow_run_id, f"{path}.parent_flow_run_id"
    )
    if parent_criteria is not None:
        parent = exists(select(1).where(m.TaskRun.id == r.parent_task_run_id, parent_criteria))
    return combine(
        flt.operator,
        [
            id_clause(flt.id, r.id, f"{path}.id"),
            string_clause(flt.name, r.name, f"{path}.name"),
            tags_clause(flt.tags, m.FlowRunTag, r.id, f"{path}.tags"),
            id_clause(flt.deployment_id, r.deployment_id, f"{path}.deployment_id"),
            string_clause(flt.work_queue_name, r.work_queue_name, f"{path}.work_queue_name"),
            string_clause(flt.work_pool_name, r.work_pool_name, f"{path}.work_pool_name"),
            state_clause(flt.state, r.state_type, r.state_name, f"{path}.state"),
            string_clause(flt.flow_version, r.flow_version, f"{path}.flow_version"),
            time_clause(
                flt.start_time,
                m.FLOW_RUN_EFFECTIVE_START,
                f"{path}.start_time",
                null_column=r.start_time,
            ),
            time_clause(flt.end_time, r.end_time, f"{path}.end_time"),
            time_clause(
                flt.expected_start_time, r.expected_start_time, f"{path}.expected_start_time"
            ),
            time_clause(
                flt.next_scheduled_start_time,
                r.next_scheduled_start_time,
                f"{path}.next_scheduled_start_time",
            ),
            parent,
            id_clause(flt.parent_task_run_id, r.parent_task_run_id, f"{path}.parent_task_run_id"),
            string_clause(flt.idempotency_key, r.idempotency_key, f"{path}.idempotency_key"),
            string_clause(flt.created_by_id, r.created_by_id, f"{path}.created_by_id"),
            string_clause(flt.created_by_type, r.created_by_type, f"{path}.created_by_type"),
            id_clause(flt.flow_id, r.flow_id, f"{path}.flow_id"),
        ],
    )


def task_run_clause(flt: f.TaskRunFilter, path: str) -> Clause | None:
    t = m.TaskRun
    subflow = None
    if flt.subflow_runs.HasField("exists"):
        has = exists(select(1).where(m.FlowRun.parent_task_run_id == t.id))
        subflow = has if flt.subflow_runs.exists else ~has
    effective_start = _coalesce(t.start_time, t.expected_start_time)
    return combine(
        flt.operator,
        [
            id_clause(flt.id, t.id, f"{path}.id"),
            string_clause(flt.name, t.name, f"{path}.name"),
            tags_clause(flt.tags, m.TaskRunTag, t.id, f"{path}.tags"),
            state_clause(flt.state, t.state_type, t.state_name, f"{path}.state"),
            time_clause(
                flt.start_time, effective_start, f"{path}.start_time", null_column=t.start_time
            ),
            time_clause(flt.end_time, t.end_time, f"{path}.end_time"),
            time_clause(
                flt.expected_start_time, t.expected_start_time, f"{path}.expected_start_time"
            ),
            subflow,
            id_clause(flt.flow_run_id, t.flow_run_id, f"{path}.flow_run_id"),
            string_clause(flt.task_key, t.task_key, f"{path}.task_key"),
            int_clause(flt.map_index, t.map_index),
        ],
    )


def work_pool_clause(flt: f.WorkPoolFilter, path: str) -> Clause | None:
    p = m.WorkPool
    return combine(
        flt.operator,
        [
            id_clause(flt.id, p.id, f"{path}.id"),
            string_clause(flt.name, p.name, f"{path}.name"),
            string_clause(flt.type, p.type, f"{path}.type"),
        ],
    )


def work_queue_clause(flt: f.WorkQueueFilter, path: str) -> Clause | None:
    q = m.WorkQueue
    return combine(
        flt.operator,
        [id_clause(flt.id, q.id, f"{path}.id"), string_clause(flt.name, q.name, f"{path}.name")],
    )


def log_clause(flt: f.LogFilter, path: str) -> Clause | None:
    lg = m.Log
    return combine(
        flt.operator,
        [
            int_clause(flt.level, lg.level),
            time_clause(flt.timestamp, lg.timestamp, f"{path}.timestamp"),
            id_clause(flt.flow_run_id, lg.flow_run_id, f"{path}.flow_run_id"),
            id_clause(flt.task_run_id, lg.task_run_id, f"{path}.task_run_id"),
        ],
    )


def flow_run_criteria(criteria: f.FlowRunCriteria, path: str = "filter") -> Clause | None:
    """Criteria on flow runs and their related objects, combined with AND. Built once per
    distinct criteria: dashboards and workers repeat the same few, and building the clause cost
    more than running the statement it went into."""
    if criteria.ByteSize() > _CACHED_CRITERIA_BYTES:
        return _compile_flow_run_criteria(criteria, path)
    return _cached_flow_run_criteria(criteria.SerializeToString(deterministic=True), path)


# Only the small criteria that dashboards and workers repeat are kept: the cache's 512 entries
# of a megabyte each would hold half a gigabyte.
_CACHED_CRITERIA_BYTES = 4096


@functools.lru_cache(maxsize=512)
def _cached_flow_run_criteria(data: bytes, path: str) -> Clause | None:
    return _compile_flow_run_criteria(f.FlowRunCriteria.FromString(data), path)


def _compile_flow_run_criteria(criteria: f.FlowRunCriteria, path: str) -> Clause | None:
    r = m.FlowRun
    return combine(
        f.FILTER_OPERATOR_AND,
        [
            flow_run_clause(criteria.flow_runs, f"{path}.flow_runs"),
            _exists(m.Flow.id == r.flow_id, flow_clause(criteria.flows, f"{path}.flows")),
            _exists(
                m.TaskRun.flow_run_id == r.id,
                task_run_clause(criteria.task_runs, f"{path}.task_runs"),
            ),
            _exists(
                m.Deployment.id == r.deployment_id,
                deployment_clause(criteria.deployments, f"{path}.deployments"),
            ),
            _exists(
                m.WorkPool.name == r.work_pool_name,
                work_pool_clause(criteria.work_pools, f"{path}.work_pools"),
            ),
            _exists(
                and_(
                    m.WorkQueue.name == r.work_queue_name,
                    m.WorkQueue.work_pool_name.is_not_distinct_from(r.work_pool_name),
                ),
                work_queue_clause(criteria.work_queues, f"{path}.work_queues"),
            ),
        ],
    )


def _coalesce(*columns: InstrumentedAttribute[Any]) -> Any:
    return func.coalesce(*columns)


def task_run_criteria(criteria: Any, path: str = "filter") -> Clause | None:
    """TaskRunCriteria: criteria on task runs and on their flow run, flow and deployment."""
    t, r = m.TaskRun, m.FlowRun
    related = combine(
        f.FILTER_OPERATOR_AND,
        [
            flow_run_clause(criteria.flow_runs, f"{path}.flow_runs"),
            _exists(m.Flow.id == r.flow_id, flow_clause(criteria.flows, f"{path}.flows")),
            _exists(
                m.Deployment.id == r.deployment_id,
                deployment_clause(criteria.deployments, f"{path}.deployments"),
            ),
        ],
    )
    return combine(
        f.FILTER_OPERATOR_AND,
        [
            task_run_clause(criteria.task_runs, f"{path}.task_runs"),
            _exists(r.id == t.flow_run_id, related),
        ],
    )
