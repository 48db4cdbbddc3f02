"""What a task called with `submit` or `map` gives back, and the arguments of one call."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass
class Call:
    """One call of a task: its arguments as given, and its place in a map."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    map_index: int = -1
    # For a mapped call: the task runs whose results were mapped over, by argument position
    # or name (each element has no origin of its own).
    mapped_from: dict[int | str, str] = field(default_factory=dict)
    known: threading.Event = field(default_factory=threading.Event)
    task_run_id: str = ""


class unmapped:
    """An argument of `Task.map` passed whole to every call instead of element by element."""

    def __init__(self, value: Any) -> None:
        self.value = value


class TaskFuture(Generic[R]):
    """A task called with `submit` or `map`: its task run's id once made, and its result."""

    def __init__(self, future: Future[R], call: Call) -> None:
        self._future = future
        self._call = call

    @property
    def task_run_id(self) -> str:
        """The task run's id (waits until the server has made it)."""
        while not self._call.known.wait(0.05):
            if self._future.done():
                self._future.result()  # raises what stopped it before the task run was made
        return self._call.task_run_id

    def result(self, timeout: float | None = None) -> R:
        """The task's return value; raises what the task raised once it gave up."""
        return self._future.result(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the task has finished, without raising what it raised."""
        with contextlib.suppress(Exception):
            self._future.exception(timeout)

    def done(self) -> bool:
        """Whether the task has finished (completed, or given up)."""
        return self._future.done()
