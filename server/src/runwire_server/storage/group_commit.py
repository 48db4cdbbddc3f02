"""Group commit: writes that arrive together on SQLite share one transaction and one fsync.

SQLite serializes writers, and a short state change's fixed costs (the session, BEGIN
IMMEDIATE, the event-sequence bump, COMMIT and its fsync) are a large part of its cost. A write
is queued, and the queue is run on the event loop's next turn, or, while writes keep arriving
together, after a short window: every write that arrived meanwhile runs back to back in one
transaction, and each caller is answered once it commits. A lone writer never waits (its batch
of one turns the window off); under load the batch grows with the load.

Each write runs in its caller's context, so its deadline interrupts its own statements. If any
write of a batch fails, the batch is rolled back and each of its writes runs again in its own
transaction, so each caller gets its own answer and one client's error never becomes
another's. Writes that had succeeded are repeated; nothing they did had been committed.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.orm import Session

log = structlog.get_logger("runwire.storage")

Work = Callable[[Session], Any]
# Runs units back to back in one transaction and returns their results; raises if any fails.
# The deadline given is the latest of the units' (None if any has none): how long the batch
# may wait for SQLite's write lock.
RunBatch = Callable[[Sequence[tuple[Work, contextvars.Context]], float | None], list[Any]]
# Runs one unit in its own transaction (in the caller's context).
RunOne = Callable[[Work], Any]

MAX_BATCH = 64  # bounds how long one transaction holds SQLite's write lock
# How long a batch stays open while writes arrive together. Concurrent calls reach the
# handlers over several turns of the event loop, so flushing on the next turn commits few
# writes at a time; BENCHMARKS.md has how the window was chosen.
GATHER_WINDOW = 0.002


@dataclass
class _Queued:
    work: Work
    context: contextvars.Context
    deadline: float | None
    future: asyncio.Future[Any]


class GroupCommit:
    def __init__(self, run_batch: RunBatch, run_one: RunOne) -> None:
        self._run_batch = run_batch
        self._run_one = run_one
        self._queue: list[_Queued] = []
        self._scheduled = False
        # Whether to hold the next batch open for GATHER_WINDOW: only while writes arrive
        # together (the last batch had more than one), so a lone writer never waits.
        self._gather = False
        # Told each batch of more than one write: its size, and whether it committed as one.
        self.observe: Callable[[int, bool], None] = lambda size, committed: None

    def submit(self, work: Work, deadline: float | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Queued(work, contextvars.copy_context(), deadline, future))
        if not self._scheduled:
            self._scheduled = True
            if self._gather:
                loop.call_later(GATHER_WINDOW, self._flush)
            else:
                loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        if self._queue:
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._scheduled = False
        now = time.monotonic()
        # A call cancelled while queued is not written; one past its deadline runs alone, where
        # the single-write path refuses it before it begins.
        live: list[_Queued] = []
        alone: list[_Queued] = []
        for item in batch:
            if not item.future.done():
                expired = item.deadline is not None and now >= item.deadline
                (alone if expired else live).append(item)
        self._gather = len(batch) > 1
        if len(live) > 1:
            try:
                deadlines = [item.deadline for item in live]
                latest = None if None in deadlines else max(d for d in deadlines if d is not None)
                results = self._run_batch([(item.work, item.context) for item in live], latest)
            except Exception as exc:
                log.debug("group_commit.retry_alone", writes=len(live), error=repr(exc))
                self.observe(len(live), False)
                alone += live
            else:
                self.observe(len(live), True)
                for item, result in zip(live, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
        else:
            alone += live
        for item in alone:
            try:
                result = item.context.run(self._run_one, item.work)
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                if not item.future.done():
                    item.future.set_result(result)
