"""Checks on client-sent values; each failure names the request field it is about."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runwire_server.errors import InvalidArgument, quote

MAX_NAME = 255
# Per object: enough for any real use, and a bound on what one object makes every list carry.
MAX_TAGS = 100
MAX_LABELS = 100
MAX_LABEL_VALUE = 1024


def text(
    value: str, field: str, *, required: bool = False, max_length: int = MAX_NAME
) -> str | None:
    """A short text value; None when empty and not required."""
    if not value.strip():
        if required:
            raise InvalidArgument(field, "is required")
        return None
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters")
    return no_nul(value, field)


def tags(values: Sequence[str], field: str) -> list[str]:
    """Tags in their first order, without repeats."""
    if len(values) > MAX_TAGS:
        raise InvalidArgument(field, f"has {len(values)} tags; at most {MAX_TAGS} are allowed")
    out: dict[str, None] = {}
    for index, tag in enumerate(values):
        checked = text(tag, f"{field}[{index}]", required=True)
        assert checked is not None
        out[checked] = None
    return list(out)


def labels(values: Mapping[str, str], field: str) -> dict[str, str]:
    if len(values) > MAX_LABELS:
        raise InvalidArgument(field, f"has {len(values)} labels; at most {MAX_LABELS} are allowed")
    for key, value in values.items():
        where = f"{field}[{quote(key)}]"
        text(key, where, required=True)
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidArgument(where, f"must be at most {MAX_LABEL_VALUE} characters")
        no_nul(value, where)
    return dict(values)


def no_nul(value: str, field: str) -> str:
    # PostgreSQL refuses NUL in text and JSON; refuse it on every database, naming the field.
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value
