"""A mapped pipeline: one task run per input (map_index 0, 1, 2, ...), run in the background,
then gathered; the graph shows each square's edge to the numbers it was mapped over.

    uv run python examples/mapped_pipeline.py
"""

from typing import Any

import runwire


@runwire.task
def numbers(count: int) -> list[int]:
    return list(range(1, count + 1))


@runwire.task
def square(x: int, offset: int) -> int:
    return x * x + offset


@runwire.task
def total(values: list[Any]) -> int:
    # Called with the squares' futures: each is replaced by its result, and is an edge.
    return sum(values)


@runwire.flow
def squares(count: int = 10) -> int:
    inputs = numbers(count)
    futures = square.map(inputs, offset=runwire.unmapped(1))
    return total(futures)


if __name__ == "__main__":
    print("total:", squares())
