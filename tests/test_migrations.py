"""Schema migrations: empty -> head matches the models, and back down to nothing, on SQLite and
(when RUNWIRE_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, select

from runwire_server import schema
from runwire_server.storage import models as m
from runwire_server.storage.models import Base
from tests.conftest import RUNWIRE_CLI, fresh_postgres_database, start_server_process

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    with fresh_postgres_database(base) as url:
        yield url


# SQLite cannot reflect the one expression index, so the comparison skips it (with warnings).
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
@pytest.mark.filterwarnings("ignore:autogenerate skipping")
def test_upgrade_matches_the_models_and_downgrade_removes_everything(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        schema.upgrade(engine)
        assert schema.current(engine) == schema.head()
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        schema.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        schema.upgrade(engine)  # and up again
        assert schema.current(engine) == schema.head()
    finally:
        engine.dispose()


def test_cli_and_a_server_that_must_not_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runwire.db'}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RUNWIRE_CLI), "database", *args, "--database-url", url],
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = subprocess.run(
        [str(RUNWIRE_CLI), "server", "start", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RUNWIRE_MIGRATE_ON_START": "false"},
    )
    assert refused.returncode == 2 and "runwire database upgrade" in refused.stderr
    assert cli("upgrade").returncode == 0
    assert f"current {schema.head()}" in cli("current").stdout
    proc = start_server_process(url, address="127.0.0.1:0")
    assert proc.stop() == 0
    assert cli("downgrade", "base").returncode == 0
    assert "current none" in cli("current").stdout


def test_history_slots_are_filled_from_the_runs_already_stored(database_url: str) -> None:
    """Migration 0003 adds the history roll-up; runs stored before it are counted in it."""
    engine = create_engine(database_url)
    try:
        schema.upgrade(engine, "0002")
        now = datetime.now(UTC)
        flow_id = uuid.uuid4()
        started = EPOCH + timedelta(days=20_000, seconds=59, microseconds=999_999)
        kinds = [("COMPLETED", started), ("RUNNING", started), ("SCHEDULED", None)]
        with engine.begin() as connection:
            connection.execute(
                insert(m.Flow), [{"id": flow_id, "name": "f", "created": now, "updated": now}]
            )
            connection.execute(
                insert(m.FlowRun),
                [
                    {
                        "id": uuid.uuid4(),
                        "name": f"r{n}",
                        "flow_id": flow_id,
                        "created": now,
                        "updated": now,
                        "state_type": kind,
                        "state_name": kind.title(),
                        "state_timestamp": start or now,
                        "expected_start_time": EPOCH + timedelta(days=20_000, minutes=10 * n),
                        "start_time": start,
                        "total_run_time": 1.5 if kind == "COMPLETED" else 0.0,
                    }
                    for n, (kind, start) in enumerate(kinds)
                ],
            )
            unscheduled = {"id": uuid.uuid4(), "name": "u", "created": now, "updated": now}
            connection.execute(insert(m.FlowRun), [{**unscheduled, "flow_id": flow_id}])
        schema.upgrade(engine)
        first = 20_000 * 144  # ten-minute slots in 20,000 days
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    m.FlowRunHistorySlot.slot,
                    m.FlowRunHistorySlot.state_type,
                    m.FlowRunHistorySlot.count_runs,
                    m.FlowRunHistorySlot.run_time_us,
                    m.FlowRunHistorySlot.start_lateness_us,
                    m.FlowRunHistorySlot.count_waiting,
                    m.FlowRunHistorySlot.count_running,
                ).order_by(m.FlowRunHistorySlot.slot)
            ).all()
        assert [tuple(row) for row in rows] == [
            (first, "COMPLETED", 1, 1_500_000, 59_999_999, 0, 0),
            (first + 1, "RUNNING", 1, 0, 0, 0, 1),
            (first + 2, "SCHEDULED", 1, 0, 0, 1, 0),
        ]
    finally:
        engine.dispose()


def test_slots_held_outside_their_states_are_freed(database_url: str) -> None:
    """Migration 0004 frees the slots that runs kept in AwaitingRetry (and other states that
    hold none) under the earlier release rule; slots of active runs stay."""
    engine = create_engine(database_url)
    try:
        schema.upgrade(engine, "0003")
        now = datetime.now(UTC)
        flow_id, deployment_id = uuid.uuid4(), uuid.uuid4()
        flow_runs = {kind: uuid.uuid4() for kind in ("SCHEDULED", "CANCELLED", "RUNNING")}
        task_runs = {kind: uuid.uuid4() for kind in ("SCHEDULED", "RUNNING")}
        stamps = {"created": now, "updated": now}
        with engine.begin() as connection:
            connection.execute(insert(m.Flow), [{"id": flow_id, "name": "f", **stamps}])
            connection.execute(
                insert(m.Deployment),
                [{"id": deployment_id, "name": "d", "flow_id": flow_id, **stamps}],
            )
            connection.execute(
                insert(m.FlowRun),
                [
                    {"id": i, "name": k, "flow_id": flow_id, "state_type": k, **stamps}
                    for k, i in flow_runs.items()
                ],
            )
            run_id = flow_runs["RUNNING"]
            connection.execute(
                insert(m.TaskRun),
                [
                    {"id": i, "name": k, "flow_run_id": run_id, "task_key": k, "state_type": k}
                    | stamps
                    for k, i in task_runs.items()
                ],
            )
            connection.execute(
                insert(m.ConcurrencyLimit), [{"tag": "db", "concurrency_limit": 2, **stamps}]
            )
            connection.execute(
                insert(m.DeploymentSlot),
                [{"deployment_id": deployment_id, "flow_run_id": i} for i in flow_runs.values()],
            )
            connection.execute(
                insert(m.ConcurrencySlot),
                [{"tag": "db", "task_run_id": i} for i in task_runs.values()],
            )
        schema.upgrade(engine)
        with engine.connect() as connection:
            flows_holding = set(connection.scalars(select(m.DeploymentSlot.flow_run_id)))
            tasks_holding = set(connection.scalars(select(m.ConcurrencySlot.task_run_id)))
        assert flows_holding == {flow_runs["RUNNING"]}
        assert tasks_holding == {task_runs["RUNNING"]}
    finally:
        engine.dispose()
