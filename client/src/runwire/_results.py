"""What a flow or task returns, as the Result its COMPLETED state carries: JSON when the value
is JSON, pickle otherwise; kept by the server when small, written to the results storage (a
local folder by default, any fsspec URL by setting) when large, and referenced by URI."""

from __future__ import annotations

import json
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import platformdirs

from runwire.states import Result

# Values up to this size travel inside the state (the server's own limit is 1 MiB).
INLINE_LIMIT = 64 * 1024
STORAGE_VARIABLE = "RUNWIRE_RESULTS_STORAGE"


def storage_location() -> str:
    """Where large results are written: RUNWIRE_RESULTS_STORAGE (a folder or an fsspec URL),
    else a folder in the user's data directory."""
    return os.environ.get(STORAGE_VARIABLE) or str(
        Path(platformdirs.user_data_dir("runwire")) / "results"
    )


def serialize(value: Any) -> tuple[str, bytes]:
    """The serializer's name and the bytes of `value`."""
    try:
        return "json", json.dumps(value, allow_nan=False).encode()
    except (TypeError, ValueError):
        return "pickle", pickle.dumps(value)


def to_result(value: Any, *, persist: bool = True) -> Result | None:
    """The Result to record for `value`; None when `persist` is False and it is large."""
    serializer, data = serialize(value)
    if len(data) <= INLINE_LIMIT:
        return Result(serializer=serializer, inline_value=data)
    if not persist:
        return None
    return Result(serializer=serializer, location_uri=_write(data, serializer))


def _write(data: bytes, serializer: str) -> str:
    where = storage_location()
    name = f"{uuid.uuid4().hex}.{serializer}"
    if "://" in where and not where.startswith("file://"):
        import fsspec

        uri = f"{where.rstrip('/')}/{name}"
        with fsspec.open(uri, "wb") as handle:
            handle.write(data)
        return uri
    folder = Path(where.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path.resolve().as_uri()
