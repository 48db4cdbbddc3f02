"""Resource ids: time-ordered UUIDs (version 7), so that id order is creation order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import uuid6

from runwire_server.errors import InvalidArgument, quote

# The longest text uuid.UUID accepts: braces and a urn:uuid: prefix around 36 characters.
_MAX_ID_TEXT = 45


def new_id() -> uuid.UUID:
    return uuid.UUID(int=uuid6.uuid7().int)


def parse_id(value: str, field: str, *, required: bool = True) -> uuid.UUID | None:
    """Parse a client-sent id; an empty value is None when not required."""
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return None
    if len(value) > _MAX_ID_TEXT:
        raise InvalidArgument(field, f"is {len(value)} characters long; an id is a UUID")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(field, f"{quote(value)} is not a valid UUID") from None


def require_id(value: str, field: str) -> uuid.UUID:
    parsed = parse_id(value, field)
    assert parsed is not None
    return parsed


def require_ids(values: Sequence[str], field: str, *, most: int) -> list[uuid.UUID]:
    """A list of ids, each named by its place when it is not one, and at most `most` of them."""
    if len(values) > most:
        raise InvalidArgument(field, f"holds {len(values)} ids; at most {most} are taken")
    return [require_id(value, f"{field}[{i}]") for i, value in enumerate(values)]
