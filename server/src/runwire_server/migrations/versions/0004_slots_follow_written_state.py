"""free concurrency slots that runs in their written state no longer hold

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 06:00:00

Earlier versions judged slot release on the proposed state instead of the written one: a run
whose failure was rewritten to AwaitingRetry kept its deployment or tag slot, and a deployment
whose runs were then cancelled could refuse every new run for good. A flow run holds its
deployment slot only while PENDING, RUNNING or CANCELLING, a task run its tag slots only while
RUNNING or CANCELLING; slots held outside those states are freed. Nothing is undone on the way
down: the freed slots were held by mistake.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM deployment_slots WHERE flow_run_id IN (SELECT id FROM flow_runs "
        "WHERE state_type IS NULL OR state_type NOT IN ('PENDING', 'RUNNING', 'CANCELLING'))"
    )
    op.execute(
        "DELETE FROM concurrency_slots WHERE task_run_id IN (SELECT id FROM task_runs "
        "WHERE state_type IS NULL OR state_type NOT IN ('RUNNING', 'CANCELLING'))"
    )


def downgrade() -> None:
    pass
