"""Checks that a Runwire database is whole: the engine's own integrity check (SQLite), and
every run's current state equal to the newest state of its history."""

from __future__ import annotations

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from runwire_server.storage import models as m


def integrity_problems(database_url: str) -> list[str]:
    problems: list[str] = []
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                verdict = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
                if verdict != "ok":
                    problems.append(f"integrity_check: {verdict}")
                problems += [
                    f"foreign key: {row}"
                    for row in conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                ]
        with Session(engine) as session:
            for run_model, state_model, owner in (
                (m.FlowRun, m.FlowRunState, m.FlowRunState.flow_run_id),
                (m.TaskRun, m.TaskRunState, m.TaskRunState.task_run_id),
            ):
                newest = (
                    select(state_model.id)
                    .where(owner == run_model.id)
                    .order_by(state_model.timestamp.desc())
                    .limit(1)
                    .correlate(run_model)
                    .scalar_subquery()
                )
                rows = session.execute(
                    select(run_model.id, run_model.state_id, newest.label("newest"))
                ).all()
                problems += [
                    f"{run_model.__tablename__} {run_id}: current state {state_id}, "
                    f"newest in history {newest_id}"
                    for run_id, state_id, newest_id in rows
                    if state_id != newest_id
                ]
                mismatched = session.execute(
                    select(run_model.id)
                    .join(state_model, state_model.id == run_model.state_id)
                    .where(state_model.type != run_model.state_type)
                ).all()
                problems += [
                    f"{run_model.__tablename__} {r}: state_type differs" for (r,) in mismatched
                ]
    finally:
        engine.dispose()
    return problems


def stored_ids(database_url: str) -> tuple[set[str], set[str], dict[str, int]]:
    """What the database holds: flow run ids, flow run state ids, and log lines per run."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            runs = {str(r) for r in session.scalars(select(m.FlowRun.id))}
            states = {str(s) for s in session.scalars(select(m.FlowRunState.id))}
            logs: dict[str, int] = {}
            for run_id in session.scalars(select(m.Log.flow_run_id)):
                logs[str(run_id)] = logs.get(str(run_id), 0) + 1
            return runs, states, logs
    finally:
        engine.dispose()


def stored_keys(database_url: str) -> set[str]:
    """The idempotency keys of the flow runs the database holds."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            keys = session.scalars(
                select(m.FlowRun.idempotency_key).where(m.FlowRun.idempotency_key.is_not(None))
            )
            return {str(key) for key in keys}
    finally:
        engine.dispose()
