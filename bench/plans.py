"""The database's plans for the lists the server runs most, on a seeded database.

    uv run python -m bench.plans --runs 1000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    uv run python -m bench.plans --runs 10000      # SQLite: EXPLAIN QUERY PLAN

Seeds `--runs` runs (as `python -m bench` does), and a run with 10,000 task runs and 10,000 log
lines, on a fresh database (on PostgreSQL, one made on the server --database-url names and
dropped afterwards). Then it calls the services' own list functions in this process, catches the
statements they send the driver, and prints the database's plan for each: EXPLAIN (ANALYZE,
BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on SQLite. A page read by walking an index shows an
Index Scan (SQLite: no "USE TEMP B-TREE FOR ORDER BY") and reads few buffers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from bench.workloads import seed_children, seed_runs
from runwire.v1 import filters_pb2 as f
from runwire.v1 import state_pb2, task_run_service_pb2
from runwire_server.pages import PageRequest, PageTokens
from runwire_server.services import flow_runs, logs, task_runs
from runwire_server.storage import filters
from tests.conftest import fresh_postgres_database


def lists(parent: str) -> dict[str, Callable[[Session], Any]]:
    """The lists to explain: ListFlowRuns of COMPLETED runs newest first (the dashboard's runs
    page with a state filter), and its hundredth page (a client paging through them all), a
    run's task runs and its log lines."""
    tokens = PageTokens(b"plans")

    def page(token: str = "") -> PageRequest:
        return PageRequest(50, 0, token, lambda: "plans")

    def deep_page(session: Session) -> Any:
        token = ""
        for _ in range(100):  # caught() explains the last page's statement
            listed = flow_runs.list_flow_runs(
                session.connection(),
                completed,
                f.FLOW_RUN_SORT_START_TIME_DESC,
                page(token),
                tokens,
            )
            token = listed.next_token
        return listed

    completed = filters.flow_run_criteria(
        f.FlowRunCriteria(
            flow_runs=f.FlowRunFilter(
                state=f.StateFilter(
                    type=f.StateTypeFilter(
                        any_of=f.StateTypeList(values=[state_pb2.STATE_TYPE_COMPLETED])
                    )
                )
            )
        )
    )
    of_parent = f.StringFilter(any_of=f.StringList(values=[parent]))
    return {
        "ListFlowRuns: 50 COMPLETED by start time, newest first": lambda s: (
            flow_runs.list_flow_runs(
                s.connection(), completed, f.FLOW_RUN_SORT_START_TIME_DESC, page(), tokens
            )
        ),
        "ListFlowRuns: the same, the hundredth page": deep_page,
        "ListFlowRuns: 50 by start time, oldest first": lambda s: flow_runs.list_flow_runs(
            s.connection(), None, f.FLOW_RUN_SORT_START_TIME_ASC, page(), tokens
        ),
        "ListTaskRuns: 50 of a run's by expected start, newest first": lambda s: (
            task_runs.list_task_runs(
                s.connection(),
                task_run_service_pb2.TaskRunCriteria(
                    task_runs=f.TaskRunFilter(flow_run_id=of_parent)
                ),
                f.TASK_RUN_SORT_EXPECTED_START_TIME_DESC,
                page(),
                tokens,
            )
        ),
        "ListLogs: 50 of a run's lines, oldest first": lambda s: logs.list_logs(
            s.connection(),
            f.LogFilter(flow_run_id=of_parent),
            f.LOG_SORT_TIMESTAMP_ASC,
            page(),
            tokens,
        ),
    }


def caught(url: str, work: Callable[[Session], Any]) -> tuple[str, Any]:
    """The last statement `work` sends the driver, with its parameters."""
    engine = create_engine(url)
    sent: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        with Session(engine) as session:
            work(session)
    finally:
        engine.dispose()
    return sent[-1]


def explain(url: str, statement: str, parameters: Any) -> list[str]:
    engine = create_engine(url)
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if engine.dialect.name == "postgresql" else ""
    prefix = prefix or "EXPLAIN QUERY PLAN "
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    finally:
        engine.dispose()
    if engine.dialect.name == "postgresql":
        return [str(row[0]) for row in rows]
    return [str(row[-1]) for row in rows]


@contextmanager
def database(postgres: str) -> Iterator[str]:
    if postgres:
        with fresh_postgres_database(postgres) as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{tmp}/plans.db"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (else SQLite)")
    args = parser.parse_args()
    with database(args.database_url) as url:
        started = time.perf_counter()
        seed_runs(url, args.runs)
        parent = seed_children(url)
        engine = create_engine(url)
        with engine.connect() as conn:  # statistics, as autovacuum would gather them
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        engine.dispose()
        print(f"seeded {args.runs:,} runs in {time.perf_counter() - started:.0f}s\n")
        for title, work in lists(parent).items():
            statement, parameters = caught(url, work)
            explain(url, statement, parameters)  # warm the cache, as a serving database is
            print(f"{title}:")
            for line in explain(url, statement, parameters):
                print(f"    {line}")
            print()


if __name__ == "__main__":
    main()
