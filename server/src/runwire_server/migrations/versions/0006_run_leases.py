"""leases of running flow runs and task runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 15:00:00

A run that enters RUNNING holds a lease that its reporter renews with heartbeats; when the lease
ends, the server's lease reaper proposes CRASHED (services.leases). The index serves the reaper's
look for leases that have ended. Runs written before this revision hold no lease.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import runwire_server.storage.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("flow_runs", "task_runs")


# Plain ALTER TABLE, not a batch: a batch may copy the table on SQLite, and flow_runs' history
# triggers (0003) would not survive the copy.
def upgrade() -> None:
    for table in _TABLES:
        op.add_column(
            table,
            sa.Column("lease_expires", runwire_server.storage.types.UTCDateTime(), nullable=True),
        )
        op.add_column(table, sa.Column("lease_seconds", sa.Float(), nullable=True))
        op.create_index(f"ix_{table}_lease_expires", table, ["lease_expires"])


def downgrade() -> None:
    for table in _TABLES:
        op.drop_index(f"ix_{table}_lease_expires", table_name=table)
        op.drop_column(table, "lease_seconds")
        op.drop_column(table, "lease_expires")
