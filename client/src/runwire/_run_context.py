"""What the code inside a flow run sees: the run it belongs to (a context variable), its logger,
and the reporter that keeps the run's lease and sends its logs in the background."""

from __future__ import annotations

import builtins
import contextvars
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runwire._task_reports import TaskReports
from runwire.states import StateType

if TYPE_CHECKING:
    from runwire.client import Client

# How often a flow's reporter renews its lease; the lease is three times as long (at least
# 5 s), so that a lost heartbeat or a busy moment never crashes a live run.
HEARTBEAT_VARIABLE = "RUNWIRE_HEARTBEAT_SECONDS"
LOG_BATCH = 200  # log lines a batch carries at most
LOG_EVERY = 1.0  # seconds between sends of what is buffered


def heartbeat_seconds() -> float:
    return float(os.environ.get(HEARTBEAT_VARIABLE) or 10)


def lease_seconds() -> float:
    return max(5.0, 3 * heartbeat_seconds())


@dataclass
class FlowRunContext:
    """One flow run as its code runs it."""

    client: Client
    flow_run_id: str
    flow_name: str
    log_prints: bool
    reporter: Reporter
    # Task keys already used in this run, for the next call's dynamic key.
    calls: dict[str, int] = field(default_factory=dict)
    # The task run each returned value came from, by the value's id (the values are kept, so
    # that an id is not reused while the run lasts).
    produced: dict[int, tuple[Any, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    executor: ThreadPoolExecutor | None = None
    futures: list[Any] = field(default_factory=list)
    pauses: int = 0
    # Whether tasks that no rule can hold back start without asking the server (in a flow
    # run's first attempt; a retry finds its tasks' runs made before).
    batching: bool = True

    def next_key(self, task_key: str) -> str:
        with self.lock:
            count = self.calls.get(task_key, 0)
            self.calls[task_key] = count + 1
            return str(count)

    def remember(self, value: Any, task_run_id: str) -> None:
        if value is None or isinstance(value, (bool, int, float, str)):
            return  # small values are shared by identity; their origin is ambiguous
        with self.lock:
            self.produced[id(value)] = (value, task_run_id)

    def origin(self, value: Any) -> str | None:
        found = self.produced.get(id(value))
        return found[1] if found is not None and found[0] is value else None

    def pool(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(
                    max_workers=32, thread_name_prefix=f"runwire-{self.flow_name}"
                )
            return self.executor


@dataclass(frozen=True)
class TaskRunContext:
    task_run_id: str
    task_name: str
    log_prints: bool


flow_run_context: contextvars.ContextVar[FlowRunContext | None] = contextvars.ContextVar(
    "runwire_flow_run", default=None
)
task_run_context: contextvars.ContextVar[TaskRunContext | None] = contextvars.ContextVar(
    "runwire_task_run", default=None
)


class RunCancelled(BaseException):
    """Raised inside a flow run whose server state says it is being cancelled. A
    BaseException, as asyncio's CancelledError is, so that user code's `except Exception`
    does not swallow it."""


class Reporter:
    """A background thread per flow run: heartbeats (which renew the leases of the run and of
    its running task runs, and learn of a cancellation) and batches of log lines."""

    def __init__(self, client: Client, flow_run_id: str) -> None:
        self._client = client
        self._flow_run_id = flow_run_id
        self._running: set[str] = set()
        self._logs: list[tuple[int, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runwire-reporter", daemon=True)
        self.cancelling = threading.Event()
        self.on_cancel: Callable[[], None] | None = None
        self.reports = TaskReports(client, self.task_started, self._refused)
        self._refusals = 0  # since the last heartbeat

    def start(self) -> None:
        self._thread.start()
        self.reports.start_sending()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        try:
            self.reports.stop_sending()
            self.flush()
        except Exception as exc:  # the flow has reported its end: what is left must not hide it
            logging.getLogger("runwire.reporter").warning("reports not sent: %s", exc)

    def drain(self) -> None:
        """Send every queued task run and wait for the answers, so that the server has the
        states of the flow's tasks before the flow's own; raises what stopped a report."""
        self.reports.wait_idle()
        failure, self.reports.failure = self.reports.failure, None
        if failure is not None:
            raise failure  # once: the flow then reports its failure

    def _refused(self, reason: str) -> None:
        """A report not taken as it was: most often because the flow run is being cancelled,
        which the next heartbeat, made at once, learns."""
        logging.getLogger("runwire.reporter").debug("report refused: %s", reason)
        with self._lock:
            self._refusals += 1
        self._wake.set()

    def task_started(self, task_run_id: str) -> None:
        with self._lock:
            self._running.add(task_run_id)

    def task_ended(self, task_run_id: str) -> None:
        with self._lock:
            self._running.discard(task_run_id)

    def log(self, level: int, message: str, task_run_id: str) -> None:
        with self._lock:
            self._logs.append((level, message, task_run_id))
            full = len(self._logs) >= LOG_BATCH
        if full:
            self._wake.set()

    def heartbeat(self) -> None:
        with self._lock:
            running = sorted(self._running)
        lease = self._client.heartbeat_flow_run(
            self._flow_run_id, lease=lease_seconds(), task_run_ids=running
        )
        if lease.state is None:
            return
        if lease.state.type in (StateType.CANCELLING, StateType.CANCELLED):
            first = not self.cancelling.is_set()
            self.cancelling.set()
            if first and self.on_cancel is not None:
                self.on_cancel()

    def flush(self) -> None:
        with self._lock:
            lines, self._logs = self._logs, []
        # The lines of a task whose run is still in the report queue wait for it; those of a
        # task whose run the server never took become the flow run's own.
        waiting = self.reports.unanswered({task_run_id for _, _, task_run_id in lines})
        if waiting:
            with self._lock:
                self._logs[:0] = [line for line in lines if line[2] in waiting]
            lines = [line for line in lines if line[2] not in waiting]
        if self.reports.failed:
            lines = [(lv, m, "" if t in self.reports.failed else t) for lv, m, t in lines]
        by_task: dict[str, list[tuple[int, str]]] = {}
        for level, message, task_run_id in lines:
            by_task.setdefault(task_run_id, []).append((level, message))
        for task_run_id, entries in by_task.items():
            for start in range(0, len(entries), LOG_BATCH):
                self._client.write_logs(
                    self._flow_run_id,
                    *entries[start : start + LOG_BATCH],
                    task_run_id=task_run_id,
                )

    def _loop(self) -> None:
        every = heartbeat_seconds()
        next_beat = time.monotonic() + every
        while not self._stop.is_set():
            self._wake.wait(min(LOG_EVERY, max(0.0, next_beat - time.monotonic())))
            self._wake.clear()
            try:
                self.flush()
                with self._lock:
                    refused, self._refusals = self._refusals, 0
                if refused and not self.cancelling.is_set():
                    next_beat = time.monotonic()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + every
                    self.heartbeat()
            except Exception as exc:  # the server may be away a while: try again next turn
                logging.getLogger("runwire.reporter").debug("report failed: %s", exc)


class RunHandler(logging.Handler):
    """Sends the records logged inside a run, by any logger, to that run's logs."""

    def emit(self, record: logging.LogRecord) -> None:
        flow = flow_run_context.get()
        if flow is None or record.name.startswith(("runwire.reporter", "grpc")):
            return
        task = task_run_context.get()
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        flow.reporter.log(record.levelno, message, task.task_run_id if task else "")


_handler_lock = threading.Lock()
_handler: RunHandler | None = None
_print = builtins.print


def install_capture() -> None:
    """Once per process: the root logger's handler that sends run records, and a `print` that
    logs inside runs with log_prints."""
    global _handler
    with _handler_lock:
        if _handler is not None:
            return
        _handler = RunHandler(level=logging.DEBUG)
        _handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger().addHandler(_handler)
        builtins.print = _logging_print


def _logging_print(*args: Any, **kwargs: Any) -> None:
    flow = flow_run_context.get()
    task = task_run_context.get()
    wanted = task.log_prints if task is not None else flow is not None and flow.log_prints
    if flow is None or not wanted or kwargs.get("file") not in (None,):
        _print(*args, **kwargs)
        return
    buffer = io.StringIO()
    _print(*args, **{**kwargs, "file": buffer, "end": ""})
    _print(*args, **kwargs)
    flow.reporter.log(logging.INFO, buffer.getvalue(), task.task_run_id if task else "")


def get_run_logger() -> logging.Logger:
    """The logger of the flow or task run this code runs in: what it logs goes to the run's
    logs (and to the usual handlers). Outside a run it is an ordinary logger."""
    task = task_run_context.get()
    flow = flow_run_context.get()
    if task is not None:
        name = f"runwire.task_runs.{task.task_name}"
    elif flow is not None:
        name = f"runwire.flow_runs.{flow.flow_name}"
    else:
        name = "runwire.runs"
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)  # a run's INFO lines are kept whatever the root says
    return logger
