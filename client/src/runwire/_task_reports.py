"""The task runs a flow ran without waiting for the server, queued until they are sent in
batches (ReportTaskRuns).

A task that no rule can hold back (one without a cache key or tags, in the first attempt of
its flow run) starts at once: its task run, with an id chosen here, waits in the queue with
its RUNNING state, and takes its final state there when it ends, so that the whole run is one
report. A task still running when its report has waited OPEN_AFTER seconds is sent open, so
that it shows as running, and its end is proposed by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import uuid6

from runwire._task_runs import ReportedTaskRun, report_task_runs
from runwire._values import duration, proposed_state
from runwire.states import StateType
from runwire.v1 import orchestration_pb2, state_pb2, task_run_pb2, task_run_service_pb2

if TYPE_CHECKING:
    from runwire.client import Client

OPEN_AFTER = 1.0  # seconds a running task's report waits before it is sent open
MOST_QUEUED = 1000  # reports waiting at most; a flow that gets ahead waits for its reports
BATCH = 1000  # reports a call carries at most (the server's limit)
# Bytes a call carries at most: under the size past which the server has a request checked by
# a decoding worker before it decodes it (50,000 bytes), a round trip between processes that
# costs more than the call; a single larger report still goes alone.
BATCH_BYTES = 48 * 1024


_ACCEPT = orchestration_pb2.SET_STATE_STATUS_ACCEPT
_RUNNING = StateType.RUNNING.to_proto()
_SCHEDULED = StateType.SCHEDULED.to_proto()


def new_task_run_id() -> str:
    """A time-ordered UUID (version 7), as the server's own ids are."""
    return str(uuid6.uuid7())


def stamped(state_type: StateType, **fields: Any) -> state_pb2.State:
    """A state to report, stamped with the time it happened: now."""
    state = proposed_state(state_type, **fields)
    state.timestamp.GetCurrentTime()
    return state


@dataclass(eq=False)
class PendingReport:
    """One task run in the queue, and then the server's answer to it."""

    message: task_run_service_pb2.TaskRunReport
    queued: float
    ended: bool = False
    sent: bool = False
    answered: bool = False
    answer: task_run_service_pb2.TaskRunReportResult | None = None
    error: BaseException | None = None

    @property
    def task_run_id(self) -> str:
        return self.message.task_run.id


class TaskReports:
    """The queue of one flow run's reports: tasks add to it from any thread, and its sender
    thread sends it. `opened` hears of each task run sent open before its task learns of it, and
    `refused` of each report the server did not take as it was."""

    def __init__(
        self, client: Client, opened: Callable[[str], None], refused: Callable[[str], None]
    ) -> None:
        self._client = client
        self._opened = opened
        self._refused = refused
        self._queue: list[PendingReport] = []  # in the order the tasks started
        self._ended = 0  # of the queued reports
        self._unanswered: set[str] = set()  # the task runs queued or sent, not yet answered
        self._stopping = False
        self._changed = threading.Condition()
        self._sender = threading.Thread(target=self._send_loop, name="runwire-reports", daemon=True)
        self.failure: BaseException | None = None
        self.failed: set[str] = set()  # the task runs whose reports the server never took

    def start_sending(self) -> None:
        self._sender.start()

    def stop_sending(self) -> None:
        """Send what is queued, and stop the sender."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._sender.is_alive():
            self._sender.join()
        self.send(everything=True)

    def start(self, task_run: task_run_pb2.TaskRun, lease: timedelta | float) -> PendingReport:
        """Queue a task run that starts now (once there is room in the queue), with the lease
        it takes if it is sent open."""
        report = PendingReport(
            task_run_service_pb2.TaskRunReport(task_run=task_run, lease_duration=duration(lease)),
            0.0,
        )
        with self._changed:
            self._changed.wait_for(lambda: len(self._queue) < MOST_QUEUED or self._stopping)
            report.message.states.append(stamped(StateType.RUNNING))
            report.queued = time.monotonic()
            self._queue.append(report)
            self._unanswered.add(report.task_run_id)
        return report

    def end(self, report: PendingReport, state: state_pb2.State) -> bool:
        """Give a queued report its final state, or False if it was sent open already (the
        caller proposes the state then)."""
        with self._changed:
            if report.sent:
                return False
            report.message.states.append(state)
            report.ended = True
            self._ended += 1
            self._changed.notify()
        return True

    def wait(self, report: PendingReport) -> ReportedTaskRun:
        """The server's answer to `report`, once it has come; raises what stopped its call."""
        with self._changed:
            self._changed.wait_for(lambda: report.answered)
        if report.answer is None:
            raise report.error or RuntimeError("the report was not answered")
        return ReportedTaskRun.from_proto(report.answer)

    def unanswered(self, task_run_ids: set[str]) -> set[str]:
        """Those of `task_run_ids` that the server has not made yet."""
        with self._changed:
            return task_run_ids & self._unanswered

    def wait_idle(self) -> None:
        """Send what is queued and wait until every report sent has been answered."""
        self.send(everything=True)
        with self._changed:
            self._changed.wait_for(lambda: not self._unanswered)

    def _due(self) -> bool:
        if self._ended:
            return True
        return bool(self._queue) and self._queue[0].queued <= time.monotonic() - OPEN_AFTER

    def _send_loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stopping or self._due(), OPEN_AFTER / 2)
                if self._stopping:
                    return
            self.send()

    def send(self, *, everything: bool = False) -> None:
        """Send the reports that are due (every one, batch after batch, with `everything`)."""
        while self._send_batch(everything) and everything:
            pass

    def _send_batch(self, everything: bool) -> bool:
        """Send one batch of the reports that are due; False when none is."""
        due = time.monotonic() - OPEN_AFTER
        with self._changed:
            taken: list[PendingReport] = []
            size = 0
            for report in self._queue:
                if not (everything or report.ended or report.queued <= due):
                    continue
                size += report.message.ByteSize()
                if taken and (len(taken) == BATCH or size > BATCH_BYTES):
                    break
                taken.append(report)
            if not taken:
                return False
            for report in taken:
                report.sent = True
                self._ended -= report.ended
            self._queue = [r for r in self._queue if not r.sent]
            self._changed.notify_all()
        try:
            self._call(taken)
        finally:
            with self._changed:
                for report in taken:
                    report.answered = True  # the answers were set before: all told at once
                self._unanswered.difference_update(r.task_run_id for r in taken)
                self._changed.notify_all()
        return True

    def _call(self, batch: list[PendingReport]) -> None:
        """Send a batch and keep each report's answer (or the error)."""
        try:
            answers = self._client._run(report_task_runs([r.message for r in batch]))
        except Exception as exc:  # after the client's own retries: the flow fails with it
            self.failure = exc
            with self._changed:
                self.failed.update(r.task_run_id for r in batch)
                for report in batch:
                    report.error = exc
                    report.answered = True
            return
        for report, answer in zip(batch, answers, strict=True):
            state = answer.result.state.type if answer.result.HasField("state") else None
            if not report.ended and state == _RUNNING:
                self._opened(report.task_run_id)
            report.answer = answer
            if answer.result.status != _ACCEPT and state != _SCHEDULED:  # not a retry
                reason = answer.result.details.reason or str(answer.result.status)
                self._refused(f"task run {report.task_run_id}: {reason}")
