"""sort expressions that are never NULL; task runs of a run in expected-start order

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 23:50:00

Sorts keep runs without a sort value last. PostgreSQL walks a B-tree index backwards only in the
order DESC NULLS FIRST, so a newest-first page of runs in some state sorted every run in that
state (18.7 ms at 10,000 runs) instead of reading 50 index entries. The effective start now ends
with the run's creation time, which every run has: the expression is never NULL, a sort on it
needs no NULLS clause, and both databases walk its indexes in either direction. No run changes
order: every run gets an expected start with its first state.

Task runs sort by expected start the same way (it falls back to the creation time), and the
task runs of one flow run in that order (a run's page) read a new index instead of sorting all
of that run's task runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_OLD = "coalesce(start_time, expected_start_time)"
_NEW = "coalesce(start_time, expected_start_time, created)"


def _effective_start_indexes(expression: str) -> None:
    op.create_index("ix_flow_runs_effective_start", "flow_runs", [sa.text(expression), "id"])
    op.create_index(
        "ix_flow_runs_state_type_effective_start",
        "flow_runs",
        ["state_type", sa.text(expression), "id"],
    )


def _drop_effective_start_indexes() -> None:
    op.drop_index("ix_flow_runs_effective_start", table_name="flow_runs")
    op.drop_index("ix_flow_runs_state_type_effective_start", table_name="flow_runs")


def upgrade() -> None:
    _drop_effective_start_indexes()
    _effective_start_indexes(_NEW)
    op.create_index(
        "ix_task_runs_flow_run_expected_start",
        "task_runs",
        ["flow_run_id", sa.text("coalesce(expected_start_time, created)"), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_task_runs_flow_run_expected_start", table_name="task_runs")
    _drop_effective_start_indexes()
    _effective_start_indexes(_OLD)
