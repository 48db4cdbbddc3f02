"""One server per SQLite database: the server holds a lock file beside the database while it
runs, and a second server on the same file refuses to start.

Watchers hear of changes from their own server's broadcaster; a second server writing to the
same file would change runs behind the first one's watchers. (PostgreSQL replicas share changes
through LISTEN/NOTIFY instead; see events.replicas.) The operating system drops the lock when
the process ends, however it ends, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import make_url


class DatabaseInUse(RuntimeError):
    """Another server holds the database."""


def lock_path(database_url: str) -> Path | None:
    """The lock file of a SQLite database file, or None for other databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = Path(url.database).expanduser().resolve()  # one file, whatever links name it
    return database.with_name(database.name + ".lock")


def hold(database_url: str) -> FileLock | None:
    """Take the database's lock without waiting; DatabaseInUse if another server has it."""
    path = lock_path(database_url)
    if path is None:
        return None
    lock = FileLock(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:  # an OSError too: this handler first
        raise DatabaseInUse(
            f"the SQLite database {path.with_suffix('')} is in use by another Runwire server "
            f"(it holds {path.name}); stop that server, or give this one another "
            "--database-url (a second server would not see the first one's changes)"
        ) from None
    except OSError:
        # A directory that cannot be made or written: opening the database says why.
        return None
    return lock
