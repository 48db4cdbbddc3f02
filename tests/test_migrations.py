"""Schema migrations: empty -> head matches the models, and back down to nothing, on SQLite and
(when RUNWIRE_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from runwire_server import schema
from runwire_server.storage.models import Base
from tests.conftest import RUNWIRE_CLI, fresh_postgres_database, start_server_process


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
