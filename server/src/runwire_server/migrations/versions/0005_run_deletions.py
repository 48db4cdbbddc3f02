"""record deleted flow runs on the event sequence, and runs whose events were pruned

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 07:00:00

A deleted run's "run deleted" end reached only the watchers of the replica that deleted it: the
run's events go with it, so the end was handed to that replica's broadcaster directly. Deletions
are now numbered on the event sequence and stored here, where every replica's event bridge
reads them in order with the events. Retention prunes them with the events.

Retention keeps, per run whose events it pruned, the newest sequence number it removed
(pruned_runs): a watch of that run from an older cursor may have missed events, while watches of
other runs are not concerned.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import runwire_server.storage.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_deletions",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("flow_run_id", sa.Uuid(), nullable=False),
        sa.Column("created", runwire_server.storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_run_deletions_created", "run_deletions", ["created"])
    op.create_table(
        "pruned_runs",
        sa.Column("flow_run_id", sa.Uuid(), nullable=False),
        sa.Column("through", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["flow_run_id"], ["flow_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("flow_run_id"),
    )


def downgrade() -> None:
    op.drop_table("pruned_runs")
    op.drop_index("ix_run_deletions_created", table_name="run_deletions")
    op.drop_table("run_deletions")
