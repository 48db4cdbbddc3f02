"""PostgreSQL: the history roll-up's slot rows are updated as each transaction commits

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 23:40:00

Every state change of the runs of one flow in the same ten minutes updates the same slot rows
(migration 0003). Updated by a plain trigger, each transaction held those rows from its state
change until its commit, so concurrent writers took turns on them for the whole of their
transactions: on PostgreSQL the lifecycle did not scale past one client (pg_locks showed the
writers waiting on one another's transaction ids, in the slot upsert). Deferred to the commit,
the trigger runs after the transaction has taken the event-sequence counter (events.outbox), so
the slot rows are held only while it commits, as the counter already is, and transactions that
write events reach them one at a time (no waits between them, and no deadlocks). The trigger's
rows are the images the change made, so the sums are those the immediate trigger added.

SQLite serializes writers, and its triggers stay as they are.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# As in revision 0003.
_WATCHED = (
    "expected_start_time, flow_id, state_type, state_name, state_timestamp, start_time, "
    "total_run_time"
)


def _trigger(timing: str) -> None:
    op.execute("DROP TRIGGER flow_runs_history ON flow_runs")
    constraint = "CONSTRAINT " if timing else ""
    op.execute(
        f"CREATE {constraint}TRIGGER flow_runs_history AFTER INSERT OR UPDATE OF {_WATCHED}"
        f" OR DELETE ON flow_runs {timing} FOR EACH ROW EXECUTE FUNCTION flow_runs_history()"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _trigger("DEFERRABLE INITIALLY DEFERRED")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _trigger("")
