"""The tokens file and the edits `runwire token` makes to it.

One token a line: `sha256:<hex> <role> <name>`, optionally followed by `expires=<UTC time>`
(`2026-12-29T00:00:00Z`); `#` starts a comment. Lines without an expiry, as written before
expiry existed, never expire.

Edits replace the whole file through a temporary file and a rename, so a server reading it
(it checks for changes every second) sees the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

ROLES = ("read", "write")
LINE_FORMAT = "expected 'sha256:<64 hex digits> <role> <name>' and optionally 'expires=<UTC time>'"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EXPIRES = "expires="
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"([1-9][0-9]*)([smhdw])")


@dataclass(frozen=True)
class Entry:
    """One token of the file; the hash is the file's, never shown to anyone."""

    token_hash: str
    role: str
    name: str
    expires: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now


def check_role(role: str, where: str) -> str:
    if role not in ROLES:
        raise ValueError(f"{where}: role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def format_line(token_hash: str, role: str, name: str, expires: datetime | None = None) -> str:
    line = f"sha256:{token_hash} {role} {name}"
    return line if expires is None else f"{line} {EXPIRES}{format_time(expires)}"


def parse(text: str, source: str) -> list[Entry]:
    """Every token of a file's text; ValueError names the first line that does not parse."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        parts = line.split()
        if not 3 <= len(parts) <= 4 or not parts[0].startswith("sha256:") or len(parts[0]) != 71:
            raise ValueError(f"{where}: {LINE_FORMAT}")
        expires = _parse_expires(parts[3], where) if len(parts) == 4 else None
        entries.append(
            Entry(
                parts[0].removeprefix("sha256:").lower(),
                check_role(parts[1], where),
                parts[2],
                expires,
            )
        )
    return entries


def _parse_expires(column: str, where: str) -> datetime:
    if column.startswith(EXPIRES):
        with contextlib.suppress(ValueError):
            return datetime.strptime(column[len(EXPIRES) :], TIME_FORMAT).replace(tzinfo=UTC)
    raise ValueError(
        f"{where}: the fourth column must be 'expires=<UTC time>' such as "
        f"'expires=2026-12-29T00:00:00Z', not {column!r}"
    )


def parse_duration(text: str) -> timedelta:
    """`90m`, `12h`, `30d`, `2w`: a whole number and one unit (s, m, h, d, w)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: give a whole number and a unit s, m, h, d or w, "
            "such as 90m, 12h or 30d"
        )
    try:
        return timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def expiry_after(duration: timedelta, now: datetime | None = None) -> datetime:
    """The moment `duration` from now, in whole seconds and never sooner than asked (the file
    keeps seconds)."""
    try:
        moment = (now or datetime.now(UTC)) + duration
    except OverflowError:
        raise ValueError("that expiry is past the year 9999") from None
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def read(path: str) -> tuple[str, list[Entry]]:
    """The file's text exactly as stored (line endings included) and its tokens."""
    with open(path, encoding="utf-8", newline="") as file:
        text = file.read()
    return text, parse(text, path)


def add(path: str, line: str) -> None:
    """Append a line; the file is created if missing. A file that does not parse is left
    alone (ValueError): a server would keep refusing it, and the new token with it."""
    try:
        text, _ = read(path)
    except FileNotFoundError:
        text = ""
    if text and not text.endswith(("\n", "\r")):
        text += "\n"
    write_atomically(path, f"{text}{line}\n")


def remove(path: str, name: str) -> tuple[int, int]:
    """Remove every token named `name`, keeping every other line as it is. Returns how many
    were removed and how many remain. A file that does not parse is left alone (ValueError):
    a server would keep the tokens in force, the removed one included."""
    text, entries = read(path)
    kept = []
    removed = 0
    for line in text.splitlines(keepends=True):
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 3 and parts[2] == name:
            removed += 1
        else:
            kept.append(line)
    if removed:
        write_atomically(path, "".join(kept))
    return removed, len(entries) - removed


def write_atomically(path: str, text: str) -> None:
    """Replace the file's contents in one rename, keeping its permissions. A symbolic link is
    followed, so the file it points to is replaced and the link stays."""
    target = os.path.realpath(path)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    descriptor, temporary = tempfile.mkstemp(
        dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            # Without this a crash soon after the rename can leave an empty file behind.
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    # The only way to read the umask is to set it; the CLI is single-threaded.
    current = os.umask(0o022)
    os.umask(current)
    return current
