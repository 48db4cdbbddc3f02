"""Run messages built once and reused while the run read is unchanged.

Building a run's message from its record costs more than reading its row: a FlowRun takes some
25 fields and submessages set one by one. Most runs a page shows are finished, and the same
pages are read again and again (a dashboard, a CLI's live view, a client polling its runs). A
run's message is a function of its record and, while it runs or waits to start, of the clock
(its estimated run time and start delay grow): every other run's message is kept here, by id,
and handed out again while the record read is equal, column for column, to the one it was
built from. The check compares what was read, not a version, so no write path has to remember
to invalidate anything, and a stale message cannot be served.

Messages handed out are shared: callers copy them into their responses (a constructor or
`extend` copies) and never change them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from runwire_server.orchestration import bookkeeping
from runwire_server.run_records import RunRecord

R = TypeVar("R", bound=RunRecord)
M = TypeVar("M", bound=Message)


class MessageCache(Generic[R, M]):
    """`build(record, at)` for runs, remembering the last `capacity` messages of runs whose
    message does not depend on `at`."""

    def __init__(self, build: Callable[[R, datetime], M], capacity: int) -> None:
        self._build = build
        self._capacity = capacity
        # id: (the record's values, its message), least recently used first.
        self._kept: OrderedDict[Any, tuple[tuple[Any, ...], M]] = OrderedDict()

    def keep(self, capacity: int) -> None:
        """Keep at most `capacity` messages from now on (0: none)."""
        self._capacity = capacity
        while len(self._kept) > capacity:
            self._kept.popitem(last=False)

    def __call__(self, record: R, at: datetime) -> M:
        if not self._capacity or bookkeeping.depends_on_clock(record):
            return self._build(record, at)
        # Every column, its tags and its state record (which compares by its own columns).
        values = tuple(record.__dict__.values())
        kept = self._kept.get(record.id)
        if kept is not None and kept[0] == values:
            self._kept.move_to_end(record.id)
            return kept[1]
        message = self._build(record, at)
        self._kept[record.id] = (values, message)
        if len(self._kept) > self._capacity:
            self._kept.popitem(last=False)
        return message

    def __len__(self) -> int:
        return len(self._kept)
