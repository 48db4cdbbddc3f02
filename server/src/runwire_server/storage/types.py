"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

# JSONB on PostgreSQL for indexable documents; plain JSON text elsewhere.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


def _as_utc(value: datetime) -> datetime:
    """A stored datetime as an aware UTC one (naive ones are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware_result(value: datetime | None) -> datetime | None:
    """A value of a driver that returns aware datetimes: already UTC when the session's time
    zone is (storage.database sets it on PostgreSQL), converted otherwise."""
    if value is None or value.tzinfo is UTC:
        return value
    return _as_utc(value)


# 'YYYY-MM-DD HH:MM:SS.ffffff', as bind_processor below writes it.
_WRITTEN_LENGTH = 26


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes. SQLite keeps naive UTC text, which sorts correctly."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)

    # On SQLite a value would pass through two processors each way (this type's and SQLite's
    # DATETIME text format), on every datetime column of every row read. One function each way
    # does the same: the text is SQLAlchemy's own format, which isoformat writes and
    # fromisoformat reads.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        to_stored = self.process_bind_param  # refuses naive values; naive UTC on SQLite

        def process(value: datetime | None) -> str | None:
            stored = to_stored(value, dialect)
            return None if stored is None else stored.isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return _aware_result

        parse = datetime.fromisoformat

        # The text this type writes is naive UTC with six digits of fraction: parsed with its
        # offset appended, it comes out aware (with the UTC singleton) in one call, several
        # times faster than a replace() after. Text written elsewhere (without a fraction, or
        # with an offset of its own) takes the general path.
        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            if len(value) == _WRITTEN_LENGTH and value[19] == ".":
                with contextlib.suppress(ValueError):  # an offset in six characters
                    return parse(value + "+00:00")
            return _as_utc(parse(value))

        return process


class Id(TypeDecorator[uuid.UUID]):
    """A UUID: native on PostgreSQL, 32 hex digits on SQLite.

    On SQLite, reading one through uuid.UUID(...) checks and cleans its argument in Python (a
    twentieth of a read by id, which reads four). The text here is always the 32 digits our
    own writes stored, so the value is made from its integer directly, as the uuid module
    itself does; anything else takes uuid.UUID's path.
    """

    impl = Uuid
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        make, set_field, unknown = object.__new__, object.__setattr__, uuid.SafeUUID.unknown

        def process(value: str | None) -> uuid.UUID | None:
            if value is None:
                return None
            if len(value) != 32 or not value.isalnum():
                return uuid.UUID(value)
            made = make(uuid.UUID)
            set_field(made, "int", int(value, 16))
            set_field(made, "is_safe", unknown)
            return made

        return process
