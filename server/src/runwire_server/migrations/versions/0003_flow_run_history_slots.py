"""flow-run history kept per ten-minute slot by triggers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 06:10:00

GetFlowRunHistory over a million runs read every run in its window (7 s). Triggers on flow_runs
now keep counts and sums per (ten-minute slot of expected start, flow, state type, state name),
so history reads a few thousand slot rows plus the runs of the present ten minutes and of the
smaller parts of slots that interval edges cut. Triggers, not application code, so that no
writer can forget them, and so that they cost SQLite's time only (no extra statement through
the driver).

On PostgreSQL one statement upserts both of an update's slot rows in key order, so concurrent
transactions lock slot rows in the same order and cannot deadlock on them.

The SQL here is frozen with this revision; `services/history.py` reads the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SLOT_US = 600_000_000
TABLE = "flow_run_history_slots"
KEY = ("slot", "flow_id", "state_type", "state_name")
SUMS = (
    "count_runs",
    "run_time_us",
    "start_lateness_us",
    "count_waiting",
    "waiting_offset_us",
    "count_running",
    "running_offset_us",
)
# The columns whose change moves a run between slots or changes what it adds to one.
WATCHED = (
    "expected_start_time",
    "flow_id",
    "state_type",
    "state_name",
    "state_timestamp",
    "start_time",
    "total_run_time",
)
TERMINAL = "('COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED')"


def _epoch_us(dialect: str, column: str) -> str:
    """Whole microseconds since 1970, as services/history.py computes them."""
    if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff'
        # The fraction is cut off before strftime, which works in milliseconds and would round
        # .9995 and above up to the next second.
        return (
            f"(CAST(strftime('%s', substr({column}, 1, 19)) AS BIGINT) * 1000000"
            f" + CAST(substr({column}, 21, 6) AS BIGINT))"
        )
    return f"CAST(round(extract(epoch from {column}) * 1000000) AS BIGINT)"


def _slot(dialect: str, row: str) -> str:
    # Floor division: SQL's integer division truncates toward zero, which is wrong before 1970.
    expected = _epoch_us(dialect, f"{row}.expected_start_time")
    return (
        f"CASE WHEN {expected} >= 0 THEN {expected} / {SLOT_US}"
        f" ELSE ({expected} + 1) / {SLOT_US} - 1 END"
    )


def _contribution(dialect: str, row: str, sign: str) -> str:
    """What one run (`row` is NEW, OLD or a table alias) adds to its slot, times `sign`."""

    def us(column: str) -> str:
        return _epoch_us(dialect, f"{row}.{column}")

    expected = us("expected_start_time")
    late = f"({us('start_time')} - {expected})"
    waiting = (
        f"{row}.start_time IS NULL AND ({row}.state_type IS NULL"
        f" OR {row}.state_type NOT IN {TERMINAL})"
    )
    running = f"{row}.state_type = 'RUNNING' AND {row}.state_timestamp IS NOT NULL"
    # Instants are kept as offsets from the slot's start: a sum of instants since 1970 would
    # overflow 64 bits at about five thousand runs.
    slot_start = f"({_slot(dialect, row)}) * {SLOT_US}"
    values = {
        "slot": _slot(dialect, row),
        "flow_id": f"{row}.flow_id",
        "state_type": f"coalesce({row}.state_type, '')",
        "state_name": f"coalesce({row}.state_name, '')",
        "count_runs": f"{sign}",
        "run_time_us": f"{sign} * CAST(round({row}.total_run_time * 1000000) AS BIGINT)",
        "start_lateness_us": f"{sign} * CASE WHEN {row}.start_time IS NOT NULL AND {late} > 0"
        f" THEN {late} ELSE 0 END",
        "count_waiting": f"{sign} * CASE WHEN {waiting} THEN 1 ELSE 0 END",
        "waiting_offset_us": f"{sign} * CASE WHEN {waiting} THEN {expected} - {slot_start}"
        " ELSE 0 END",
        "count_running": f"{sign} * CASE WHEN {running} THEN 1 ELSE 0 END",
        "running_offset_us": f"{sign} * CASE WHEN {running}"
        f" THEN {us('state_timestamp')} - {slot_start} ELSE 0 END",
    }
    return ", ".join(f"{value} AS {name}" for name, value in values.items())


def _upsert(dialect: str, rows: list[tuple[str, str]], source: str = "") -> str:
    """One statement adding each (row, sign)'s contribution to its slot, grouped and in key
    order. `source` is a FROM clause for the backfill; triggers read NEW and OLD."""
    parts = [
        f"SELECT {_contribution(dialect, row, sign)} {source}"
        f" WHERE {row}.expected_start_time IS NOT NULL"
        for row, sign in rows
    ]
    key = ", ".join(KEY)
    sums = ", ".join(f"sum({name})" for name in SUMS)
    add = ", ".join(f"{name} = {TABLE}.{name} + excluded.{name}" for name in SUMS)
    # WHERE true: SQLite's documented way to keep ON CONFLICT from parsing as a join constraint.
    return (
        f"INSERT INTO {TABLE} ({key}, {', '.join(SUMS)})"
        f" SELECT {key}, {sums} FROM ({' UNION ALL '.join(parts)}) AS changes WHERE true"
        f" GROUP BY {key} ORDER BY {key}"
        f" ON CONFLICT ({key}) DO UPDATE SET {add}"
    )


def _drop_empty(row: str, dialect: str) -> str:
    """An emptied slot row goes, so that the table holds only slots with runs in them."""
    return (
        f"DELETE FROM {TABLE} WHERE slot = {_slot(dialect, row)} AND flow_id = {row}.flow_id"
        f" AND state_type = coalesce({row}.state_type, '')"
        f" AND state_name = coalesce({row}.state_name, '') AND count_runs = 0"
    )


def _bodies(dialect: str) -> dict[str, list[str]]:
    return {
        "INSERT": [_upsert(dialect, [("NEW", "1")])],
        "UPDATE": [
            _upsert(dialect, [("NEW", "1"), ("OLD", "-1")]),
            _drop_empty("OLD", dialect),
        ],
        "DELETE": [_upsert(dialect, [("OLD", "-1")]), _drop_empty("OLD", dialect)],
    }


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("flow_id", sa.Uuid(), nullable=False),
        sa.Column("state_type", sa.String(length=16), nullable=False),
        sa.Column("state_name", sa.String(length=255), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in SUMS),
        sa.PrimaryKeyConstraint(*KEY),
    )
    dialect = op.get_bind().dialect.name
    watched = ", ".join(WATCHED)
    if dialect == "sqlite":
        for event, statements in _bodies(dialect).items():
            of = f" OF {watched}" if event == "UPDATE" else ""
            body = "".join(f"{statement};\n" for statement in statements)
            op.execute(
                f"CREATE TRIGGER flow_runs_history_{event.lower()} AFTER {event}{of}"
                f" ON flow_runs FOR EACH ROW BEGIN\n{body}END"
            )
    else:
        branches = "".join(
            f"{'IF' if i == 0 else 'ELSIF'} TG_OP = '{event}' THEN\n"
            + "".join(f"    {statement};\n" for statement in statements)
            for i, (event, statements) in enumerate(_bodies(dialect).items())
        )
        op.execute(
            "CREATE FUNCTION flow_runs_history() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{branches}END IF;\nRETURN NULL;\nEND\n$$"
        )
        op.execute(
            f"CREATE TRIGGER flow_runs_history AFTER INSERT OR UPDATE OF {watched} OR DELETE"
            " ON flow_runs FOR EACH ROW EXECUTE FUNCTION flow_runs_history()"
        )
    # Runs stored before this revision.
    op.execute(_upsert(dialect, [("r", "1")], source="FROM flow_runs AS r"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER flow_runs_history_{event}")
    else:
        op.execute("DROP TRIGGER flow_runs_history ON flow_runs")
        op.execute("DROP FUNCTION flow_runs_history()")
    op.drop_table(TABLE)
