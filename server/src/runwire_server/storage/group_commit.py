"""Group commit: writes that arrive together share one transaction and one commit.

A short state change's fixed costs (the session, BEGIN, the event-sequence bump, COMMIT and
its flush to disk) are a large part of its cost, and on every database its transaction holds
row locks that all writes share until it commits: the event-sequence counter, and the history
roll-up's rows of the runs' ten minutes. Writes that take turns on those locks commit one at
a time, however many connections there are; writes that share a transaction take them once.

A write is queued, and the queue is run on the event loop's next turn, or, while writes keep
arriving together, after a short window: every write that arrived meanwhile runs back to back
in one transaction, and each caller is answered once it commits. A lone writer never waits (its
batch of one turns the window off); under load the batch grows with the load. On SQLite the
batch runs on the event loop (SQLite serializes writers anyway, and its statements are short).
Elsewhere it runs on a worker thread, one batch at a time: the writes that arrive while one is
in flight make the next, so the batch grows with the database's round trips too.

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
from concurrent.futures import Executor
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


# A write's result, or its error (then the flag is True).
Outcome = tuple[_Queued, Any, bool]


class GroupCommit:
    def __init__(self, run_batch: RunBatch, run_one: RunOne, executor: Executor | None) -> None:
        """`executor`: where batches run, one at a time (None: on the event loop)."""
        self._run_batch = run_batch
        self._run_one = run_one
        self._executor = executor
        self._queue: list[_Queued] = []
        self._scheduled = False
        # A batch is running on the executor. One at a time: two or four at once overlapped
        # their round trips but committed smaller batches, and ran slower (BENCHMARKS.md).
        self._in_flight = False
        # Whether to hold the next batch open for GATHER_WINDOW: only while writes arrive
        # together (the last batch had more than one), so a lone writer never waits.
        self._gather = False
        # Told each batch of more than one write: its size, and whether it committed as one.
        self.observe: Callable[[int, bool], None] = lambda size, committed: None

    def submit(self, work: Work, deadline: float | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Queued(work, contextvars.copy_context(), deadline, future))
        if not self._scheduled and not self._in_flight:
            self._scheduled = True
            if self._gather and self._executor is None:
                loop.call_later(GATHER_WINDOW, self._flush)
            else:
                loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        loop = asyncio.get_running_loop()
        self._scheduled = False
        self._gather = len(batch) > 1
        now = time.monotonic()
        # A call cancelled while queued is not written; one past its deadline runs alone, where
        # the single-write path refuses it before it begins.
        live: list[_Queued] = []
        alone: list[_Queued] = []
        for item in batch:
            if not item.future.done():
                expired = item.deadline is not None and now >= item.deadline
                (alone if expired else live).append(item)
        if self._executor is None:
            if self._queue:
                self._scheduled = True
                loop.call_soon(self._flush)
            self._answer(self._commit(live, alone))
            return
        self._in_flight = True
        running = loop.run_in_executor(self._executor, self._commit, live, alone)
        running.add_done_callback(lambda done: self._landed(done, live + alone))

    def _landed(self, running: asyncio.Future[list[Outcome]], batch: list[_Queued]) -> None:
        self._in_flight = False
        if self._queue and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        error = running.exception()
        self._answer(running.result() if error is None else [(i, error, True) for i in batch])

    @staticmethod
    def _answer(outcomes: list[Outcome]) -> None:
        for item, value, failed in outcomes:
            if item.future.done():
                continue
            if failed:
                item.future.set_exception(value)
            else:
                item.future.set_result(value)

    def _commit(self, live: list[_Queued], alone: list[_Queued]) -> list[Outcome]:
        """Run `live` in one transaction (or, if any fails, each alone) and `alone` each in its
        own: every write's result, or its error (then the flag is True)."""
        outcomes: list[Outcome] = []
        if len(live) > 1:
            try:
                deadlines = [item.deadline for item in live]
                latest = None if None in deadlines else max(d for d in deadlines if d is not None)
                results = self._run_batch([(item.work, item.context) for item in live], latest)
            except Exception as exc:
                log.debug("group_commit.retry_alone", writes=len(live), error=repr(exc))
                self.observe(len(live), False)
                alone = live + alone
            else:
                self.observe(len(live), True)
                outcomes += [
                    (item, result, False) for item, result in zip(live, results, strict=True)
                ]
        else:
            alone = live + alone
        for item in alone:
            try:
                outcomes.append((item, item.context.run(self._run_one, item.work), False))
            except Exception as exc:
                outcomes.append((item, exc, True))
        return outcomes
