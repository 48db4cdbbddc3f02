"""Resource ids: time-ordered UUIDs (version 7), so that id order is creation order."""

from __future__ import annotations

import uuid

import uuid6

from runwire_server.errors import InvalidArgument


def new_id() -> uuid.UUID:
    return uuid.UUID(int=uuid6.uuid7().int)


def parse_id(value: str, field: str, *, required: bool = True) -> uuid.UUID | None:
    """Parse a client-sent id; an empty value is None when not required."""
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(field, f"{value!r} is not a valid UUID") from None


def require_id(value: str, field: str) -> uuid.UUID:
    parsed = parse_id(value, field)
    assert parsed is not None
    return parsed
