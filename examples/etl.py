"""The three-task ETL as a flow: each call is a flow run, each task call a task run, and the
server records every state, the graph's edges and the logs.

    uv run runwire server start &        # in another terminal
    uv run python examples/etl.py
"""

import runwire


@runwire.task(retries=2, retry_delay_seconds=1)
def extract(day: str) -> list[dict[str, int]]:
    runwire.get_run_logger().info("extracting %s", day)
    return [{"id": i, "amount": i * 10} for i in range(5)]


@runwire.task
def transform(rows: list[dict[str, int]]) -> list[dict[str, int]]:
    return [{**row, "amount": row["amount"] * 2} for row in rows]


@runwire.task
def load(rows: list[dict[str, int]]) -> int:
    print(f"loaded {len(rows)} rows")
    return len(rows)


@runwire.flow(log_prints=True)
def etl(day: str = "2026-12-04") -> int:
    return load(transform(extract(day)))


if __name__ == "__main__":
    print("rows loaded:", etl())
