"""Alembic environment: runs migrations on the connection `runwire_server.schema` hands in."""

from __future__ import annotations

from alembic import context

from runwire_server.storage.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
