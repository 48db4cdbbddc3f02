"""The server's SQLite engine converts datetimes, JSON and ids with its own short functions;
what they store must be exactly what SQLAlchemy's own types store (the history roll-up's
triggers read the datetime text by position, and rows written before must still read back),
and what they read back must be what was written. On a real SQLite file, through the server's
engine."""

from __future__ import annotations

import pickle
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError

from runwire_server.ids import new_id
from runwire_server.storage.database import Database
from runwire_server.storage.types import Id, JsonDocument, UTCDateTime

metadata = MetaData()
values = Table(
    "column_values",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime),
    Column("doc", JsonDocument),
    Column("ref", Id),
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    db = Database(f"sqlite:///{tmp_path / 'types.db'}")
    metadata.create_all(db.engine)
    yield db.engine
    db.close()


def stored_text(engine: Engine, column: str) -> list[Any]:
    """What the file holds, read without SQLAlchemy (typed: SQLite keeps '0' as 0 in a column
    declared JSON, whichever way it was written)."""
    with sqlite3.connect(str(engine.url.database)) as raw:
        return [row[0] for row in raw.execute(f"SELECT {column} FROM column_values ORDER BY id")]


def test_datetimes_are_stored_in_sqlalchemys_text_and_read_back(engine: Engine) -> None:
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 23, 10, 15, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 11, 23, 12, 15, 0, 1, tzinfo=timezone(timedelta(hours=2))),
    ]
    with engine.begin() as conn:
        conn.execute(insert(values), [{"id": i, "at": m} for i, m in enumerate(moments)])
        read = [row[0] for row in conn.execute(select(values.c.at).order_by(values.c.id))]
    sqlalchemys = sqlite_dialect.DATETIME().bind_processor(sqlite_dialect.dialect())
    assert sqlalchemys is not None
    expected = [sqlalchemys(m.astimezone(UTC).replace(tzinfo=None)) for m in moments]
    assert stored_text(engine, "at") == expected
    assert read == moments
    assert all(m.tzinfo is UTC for m in read)


def test_datetime_text_written_elsewhere_reads_back(engine: Engine) -> None:
    """Text without microseconds (SQLite's CURRENT_TIMESTAMP) or with an offset."""
    with sqlite3.connect(str(engine.url.database)) as raw:
        raw.executemany(
            "INSERT INTO column_values (id, at) VALUES (?, ?)",
            [
                (1, "2026-11-23 10:15:00"),
                (2, "2026-11-23 12:15:00.000001+02:00"),
                (3, None),
                (4, "2026-11-23 12:15:00.5+0200"),  # as long as the server's own text
            ],
        )
    with engine.connect() as conn:
        read = [row[0] for row in conn.execute(select(values.c.at).order_by(values.c.id))]
    assert read == [
        datetime(2026, 11, 23, 10, 15, tzinfo=UTC),
        datetime(2026, 11, 23, 10, 15, 0, 1, tzinfo=UTC),
        None,
        datetime(2026, 11, 23, 10, 15, 0, 500_000, tzinfo=UTC),
    ]


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive"), engine.begin() as conn:
        conn.execute(insert(values), {"id": 1, "at": datetime(2026, 11, 23)})
    assert stored_text(engine, "at") == []


def test_json_is_stored_as_sqlalchemy_stores_it_and_reads_back(
    engine: Engine, tmp_path: Path
) -> None:
    documents: list[Any] = [{}, [], None, "{}", "[]", "null", 0, "", {"a": [1, {}]}, [[]], False]
    rows = [{"id": i, "doc": d} for i, d in enumerate(documents)]
    plain = create_engine(f"sqlite:///{tmp_path / 'plain.db'}")  # SQLAlchemy's own JSON
    metadata.create_all(plain)
    with plain.begin() as conn:
        conn.execute(insert(values), rows)
    plain.dispose()
    with engine.begin() as conn:
        conn.execute(insert(values), rows)
        read = [row[0] for row in conn.execute(select(values.c.doc).order_by(values.c.id))]
    assert stored_text(engine, "doc") == stored_text(plain, "doc")
    assert "{}" in stored_text(engine, "doc")
    assert read == documents
    assert [type(d) for d in read] == [type(d) for d in documents]
    read[0]["changed"] = True  # each read is a new object, never a shared one
    with engine.connect() as conn:
        assert conn.execute(select(values.c.doc).where(values.c.id == 0)).scalar() == {}


def test_ids_are_stored_as_hex_and_read_back_as_uuids(engine: Engine) -> None:
    ids = [uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1), uuid.uuid4(), new_id()]
    with engine.begin() as conn:
        conn.execute(insert(values), [{"id": i, "ref": r} for i, r in enumerate(ids)])
        read = [row[0] for row in conn.execute(select(values.c.ref).order_by(values.c.id))]
    assert stored_text(engine, "ref") == [r.hex for r in ids]
    assert read == ids
    assert [str(r) for r in read] == [str(r) for r in ids]
    assert {hash(r) for r in read} == {hash(r) for r in ids}
    assert pickle.loads(pickle.dumps(read[3])) == ids[3]
    assert read[3].version == 7 and read[3].is_safe is uuid.SafeUUID.unknown


def test_id_text_in_other_forms_reads_as_uuid_reads_it(engine: Engine) -> None:
    """Text our writes never store takes uuid.UUID's own path: the same value or the same
    refusal."""
    known = uuid.uuid4()
    odd = [str(known), "-" + "f" * 31, "+" + "f" * 31, "_" * 32, "g" * 32, "{" + "a" * 30 + "}"]
    for text in odd:
        with sqlite3.connect(str(engine.url.database)) as raw:
            raw.execute("DELETE FROM column_values")
            raw.execute("INSERT INTO column_values (id, ref) VALUES (1, ?)", (text,))
        try:
            expected: Any = uuid.UUID(text)
        except ValueError as exc:
            expected = type(exc)
        try:
            with engine.connect() as conn:
                got: Any = conn.execute(select(values.c.ref)).scalar()
        except ValueError as exc:
            got = type(exc)
        assert got == expected, text
