"""Statements run on the driver's cursor (storage.direct) read and write exactly what SQLAlchemy's
own execution does, raise SQLAlchemy's exceptions, and stay visible to statement listeners. On
a real SQLite file and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    bindparam,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from runwire_server.storage.direct import Direct
from runwire_server.storage.types import JsonDocument, UTCDateTime
from tests.conftest import fresh_postgres_database

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(50), nullable=False),
    Column("at", UTCDateTime),
    Column("doc", JsonDocument),
    Column("score", Float),
    Column("n", Integer, nullable=False, server_default="7"),
)
VALUES = {
    "id": uuid.UUID("01234567-89ab-cdef-0123-456789abcdef"),
    "name": "a thing",
    "at": datetime(2026, 11, 23, 10, 15, 0, 123456, tzinfo=UTC),
    "doc": {"nested": [1, "two", None], "flag": True},
    "score": 1.5,
}
INSERT = Direct(insert(things).values({k: bindparam(k) for k in VALUES}))
BY_ID = Direct(select(things).where(things.c.id == bindparam("id")))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'direct.db'}")
        metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    with fresh_postgres_database(base) as url:
        engine = create_engine(url)
        metadata.create_all(engine)
        yield engine
        engine.dispose()


def test_values_round_trip_as_sqlalchemy_reads_them(engine: Engine) -> None:
    with engine.begin() as conn:
        INSERT.execute(conn, VALUES)
    with engine.begin() as conn:
        direct = BY_ID.first(conn, {"id": VALUES["id"]})
        through_sqlalchemy = conn.execute(BY_ID.statement, {"id": VALUES["id"]}).one()
        assert BY_ID.keys(conn) == tuple(through_sqlalchemy._fields)
    assert direct == tuple(through_sqlalchemy)
    assert dict(zip(("id", "name", "at", "doc", "score", "n"), direct, strict=True)) == {
        **VALUES,
        "n": 7,  # the database's default for a column the insert left out
    }


def test_nulls_literals_returning_and_many_rows(engine: Engine) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    rows = [{**VALUES, "id": i, "at": None, "doc": None, "score": None} for i in ids]
    bump = Direct(
        update(things)
        .where(things.c.name == bindparam("name"))
        .values(n=things.c.n + 5)  # a literal the statement carries itself
        .returning(things.c.n)
    )
    with engine.begin() as conn:
        INSERT.execute_many(conn, rows)
        assert BY_ID.first(conn, {"id": ids[1]}) == (ids[1], "a thing", None, None, None, 7)
        assert sorted(bump.rows(conn, {"name": "a thing"})) == [(12,), (12,), (12,)]
        assert BY_ID.first(conn, {"id": uuid.uuid4()}) is None
        assert bump.scalar(conn, {"name": "nothing"}) is None


def test_errors_are_sqlalchemys_and_change_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        INSERT.execute(conn, VALUES)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        INSERT.execute(conn, {**VALUES, "name": "a duplicate"})
    with engine.begin() as conn:
        assert BY_ID.first(conn, {"id": VALUES["id"]})[1] == "a thing"  # type: ignore[index]


def test_statement_listeners_hear_direct_statements(engine: Engine) -> None:
    heard: list[str] = []

    def listen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        heard.append(statement)

    with engine.begin() as conn:
        INSERT.execute(conn, VALUES)
    event.listen(engine, "before_cursor_execute", listen)
    try:
        with engine.begin() as conn:
            row = BY_ID.first(conn, {"id": VALUES["id"]})
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert row is not None and row[0] == VALUES["id"]
    assert len(heard) == 1 and heard[0].lstrip().upper().startswith("SELECT")


def test_statements_of_varying_shape_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        in_list = Direct(
            select(things.c.id).where(things.c.id.in_(bindparam("ids", expanding=True)))
        )
        with pytest.raises(ValueError, match="shape varies"):
            in_list.rows(conn, {"ids": [VALUES["id"]]})
        defaulted = Table(
            "defaulted",
            MetaData(),
            Column("id", Integer, primary_key=True),
            Column("v", Integer, default=3),
        )
        with pytest.raises(ValueError, match="defaults"):
            Direct(insert(defaulted).values(id=bindparam("id"))).execute(conn, {"id": 1})


def test_time_zones_and_microseconds_survive(engine: Engine) -> None:
    moments = [
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC) + timedelta(microseconds=1),
    ]
    with engine.begin() as conn:
        for moment in moments:
            INSERT.execute(conn, {**VALUES, "id": uuid.uuid4(), "at": moment})
        at = Direct(select(things.c.at).where(things.c.at.is_not(None)).order_by(things.c.at))
        assert [row[0] for row in at.rows(conn, {})] == moments


def test_nones_are_stored_as_sqlalchemy_stores_them(engine: Engine) -> None:
    """SQLAlchemy's JSON type stores None as JSON null (not SQL NULL); Direct must agree, or
    rows written by the two paths would answer IS NULL differently."""
    direct_id, plain_id = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        INSERT.execute(conn, {**VALUES, "id": direct_id, "doc": None, "at": None})
        conn.execute(INSERT.statement, {**VALUES, "id": plain_id, "doc": None, "at": None})
        stored = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                select(things.c.id, things.c.doc.is_(None), things.c.at.is_(None))
            )
        }
    assert stored[direct_id] == stored[plain_id]


def test_the_sqlalchemy_internals_it_reads_are_there() -> None:
    """storage.direct reads a few of SQLAlchemy's internals: a release that changes one must
    fail here, by name, before it fails anywhere else."""
    import importlib

    from runwire_server.storage.direct import INTERNALS

    engine = create_engine("sqlite://")
    compiled = select(things.c.id).where(things.c.id == bindparam("id")).compile(engine)
    instances = {
        "sqlalchemy.sql.compiler.SQLCompiler": compiled,
        "sqlalchemy.types.TypeEngine": things.c.id.type,
    }
    missing = []
    for where, name in INTERNALS:
        module, _, kind = where.rpartition(".")
        owner = instances.get(where, getattr(importlib.import_module(module), kind))
        if not hasattr(owner, name):
            missing.append(f"{where}.{name}")
    assert missing == [], f"SQLAlchemy no longer has {missing}: storage.direct needs a change"
    # The shapes read from them.
    entry = compiled._result_columns[0]  # type: ignore[attr-defined]
    assert isinstance(entry.keyname, str) and entry.type is not None
    assert isinstance(compiled._bind_processors, dict)  # type: ignore[attr-defined]
