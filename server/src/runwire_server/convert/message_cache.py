"""Run messages built once and reused while the run read is unchanged.

Building a run's message from its record costs more than reading its row: a FlowRun takes some
25 fields and submessages set one by one. Most runs a page shows are finished, and the same
pages are read again and again (a dashboard, a CLI's live view, a client polling its runs). A
run's message is a function of its record and, while it runs or waits to start, of the clock
(its estimated run time and start delay grow): every other run's message is kept here, by id,
and handed out again while the record read is equal, column for column, to the one it was
built from. The check compares what was read, not a version, so no write path has to remember
to invalidate anything. Values compare as Python compares them (1 == 1.0 == True inside a JSON
document); every write of a run also moves its `updated` time, so no change goes unseen.

Messages handed out are shared: callers copy them into their responses (a constructor or
`extend` copies) and never change them; nor is a record changed once its message is built.
Conversions run on the event loop and, inside units of work, on database threads: the kept
messages are guarded by a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from runwire_server.orchestration import bookkeeping
from runwire_server.run_records import RunRecord

R = TypeVar("R", bound=RunRecord)
M = TypeVar("M", bound=Message)

# At most this many encoded bytes of messages are kept for each kind of run (in memory they
# take some three times as much), and no message larger than a sixty-fourth of it: runs with
# large parameters or results cannot push out everyone else's.
KEPT_BYTES = 8 * 1024 * 1024


class MessageCache(Generic[R, M]):
    """`build(record, at)` for runs, remembering the messages of the last `capacity` runs read
    whose message does not depend on `at`."""

    def __init__(self, build: Callable[[R, datetime], M], capacity: int) -> None:
        self._build = build
        self._capacity = capacity
        # id: (the record's values, its message, its encoded size), least recently used first.
        self._kept: OrderedDict[Any, tuple[tuple[Any, ...], M, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def keep(self, capacity: int) -> None:
        """Keep at most `capacity` messages from now on (0: none)."""
        with self._lock:
            self._capacity = capacity
            self._trim()

    def __call__(self, record: R, at: datetime) -> M:
        if not self._capacity or bookkeeping.depends_on_clock(record):
            return self._build(record, at)
        # Every column, its tags and its state record (which compares by its own columns).
        values = tuple(record.__dict__.values())
        with self._lock:
            kept = self._kept.get(record.id)
            if kept is not None and kept[0] == values:
                self._kept.move_to_end(record.id)
                return kept[1]
        message = self._build(record, at)
        size = message.ByteSize()
        if size > KEPT_BYTES // 64:
            return message
        with self._lock:
            old = self._kept.pop(record.id, None)
            if old is not None:
                self._bytes -= old[2]
            self._kept[record.id] = (values, message, size)
            self._bytes += size
            self._trim()
        return message

    def _trim(self) -> None:
        while self._kept and (len(self._kept) > self._capacity or self._bytes > KEPT_BYTES):
            self._bytes -= self._kept.popitem(last=False)[1][2]

    def __len__(self) -> int:
        return len(self._kept)
