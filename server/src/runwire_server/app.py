"""What one server is made of, and the parts that are put together before it serves: the
database with its events outbox, and the settings that orchestration reads."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from runwire_server.convert.events import EventCodec
from runwire_server.events.broadcast import Broadcaster
from runwire_server.events.committed import CommittedHere
from runwire_server.events.outbox import Outbox
from runwire_server.metrics import Metrics
from runwire_server.orchestration.context import Settings as OrchestrationSettings
from runwire_server.pages import PageTokens
from runwire_server.services import Services
from runwire_server.settings import (
    ConfigurationError,
    Settings,
    database_url_for_display,
    setting,
)
from runwire_server.startup_checks import database_error
from runwire_server.storage.database import Database


@dataclass(frozen=True)
class App:
    """What one server is made of, for the edges it serves and for its own start and stop."""

    db: Database
    settings: Settings
    tokens: PageTokens
    broadcaster: Broadcaster
    metrics: Metrics
    services: Services


def orchestration_settings(settings: Settings) -> OrchestrationSettings:
    return OrchestrationSettings(
        deployment_slot_wait_seconds=settings.deployment_slot_wait_seconds,
        tag_slot_wait_seconds=settings.tag_slot_wait_seconds,
        max_cache_key_length=settings.max_cache_key_length,
        lease_seconds=settings.lease_seconds,
    )


def open_database(
    settings: Settings, broadcaster: Broadcaster, codec: EventCodec, here: CommittedHere
) -> tuple[Database, PageTokens]:
    where = f"{database_url_for_display(settings.database_url)} ({setting('database_url')})"
    try:
        db = Database(settings.database_url, pool_size=settings.database_pool_size)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot open the database at {where}: its driver is not installed ({exc}); "
            "for PostgreSQL, install runwire-server with its postgresql extra (from a clone: "
            "pip install './server[postgresql]', or uv sync)"
        ) from None
    except OSError as exc:  # making the SQLite file's directory
        raise ConfigurationError(
            f"cannot open the database at {where}: cannot make the directory {exc.filename} "
            f"({exc.strerror})"
        ) from None
    try:
        # On PostgreSQL committed events and deletions reach watchers through the replica
        # bridge, in sequence order, whichever replica wrote them; it is given this server's.
        publish = here.add if db.is_postgresql else broadcaster.publish
        db.add_commit_hooks(Outbox(codec, publish))
        db.prepare_schema(migrate=settings.migrate_on_start)
        secret = settings.page_token_secret.encode() or db.page_token_secret()
    except DBAPIError as exc:
        db.close()
        raise database_error(settings.database_url, exc) from None
    except BaseException:
        db.close()
        raise
    return db, PageTokens(secret)
