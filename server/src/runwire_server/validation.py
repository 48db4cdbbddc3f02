"""Checks on client-sent values; each failure names the request field it is about."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from runwire_server.errors import InvalidArgument

MAX_NAME = 255


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


def tags(values: Iterable[str], field: str) -> list[str]:
    out: list[str] = []
    for index, tag in enumerate(values):
        checked = text(tag, f"{field}[{index}]", required=True)
        assert checked is not None
        if checked not in out:
            out.append(checked)
    return out


def labels(values: Mapping[str, str], field: str) -> dict[str, str]:
    for key, value in values.items():
        text(key, f"{field}[{key!r}]", required=True)
        no_nul(value, f"{field}[{key!r}]")
    return dict(values)


def no_nul(value: str, field: str) -> str:
    # PostgreSQL refuses NUL in text and JSON; refuse it on every database, naming the field.
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value
