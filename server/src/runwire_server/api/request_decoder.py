"""Requests checked before a handler runs; large ones in worker processes, before the event
loop decodes them.

Decoding holds the event loop (upb keeps the GIL), and what it costs depends on what a request
holds more than on its size: 4 MiB of map entries took most of a second, 4 MiB of one string a
fraction of a millisecond. A request that may hold more entries than the server decodes on its
event loop (decoding.Pending) is decoded first by a worker (api.decode_worker), which counts its
entries and makes the checks that need no database (enum values, filters); the server decodes
only what passed, encoded anew by the worker, where it then costs milliseconds. A client that
sends many such requests keeps the workers busy: other large requests wait for them, and
nothing else does.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from google.protobuf.message import Message

import runwire_server
from runwire_server.api.decode_worker import (
    LENGTH,
    check_request,
    decode_and_check,
    frame,
    refusal_from_json,
)
from runwire_server.api.decoding import Pending, Undecodable, decode
from runwire_server.errors import (
    DecoderUnavailable,
    InvalidArgument,
    ResourceExhausted,
    ShuttingDown,
    UndecodableRequest,
)

log = structlog.get_logger("runwire.decoding")
Refusal = InvalidArgument | UndecodableRequest

# How long a worker may take to answer (the densest request within the message limit takes it
# about a second) and to start; past that it is taken to be stuck, and replaced.
ANSWER_SECONDS = 30.0
START_SECONDS = 30.0
RESTART_PAUSE_SECONDS = 5.0  # after a start that failed
STOPPING = "server shutting down; retry on another replica or after restart"
# Large requests one client may have waiting for or in a worker, and all clients together:
# each holds its bytes (up to RUNWIRE_MAX_MESSAGE_BYTES) until it is answered.
MAX_WAITING_PER_CLIENT = 16
MAX_WAITING = 64


class WorkerLost(Exception):
    """The worker process ended before it answered."""


class WorkerStuck(WorkerLost):
    """The worker did not answer in time."""


def worker_command() -> list[str]:
    # -P: not the working directory first on the path, where a file named like a module
    # would be imported instead (the server's path is given instead, below).
    return [sys.executable, "-P", "-m", "runwire_server.api.decode_worker"]


def _worker_environment() -> dict[str, str]:
    """The server's environment, and its module path: the worker runs the server's code."""
    path = os.pathsep.join(entry for entry in sys.path if entry)
    return {**os.environ, "PYTHONPATH": path}


class _Worker:
    """One worker process and the pipes to it, used by one thread at a time. The process is
    started when it is first needed, and again after it ended."""

    def __init__(self, command: Sequence[str], answer_seconds: float) -> None:
        self._command = list(command)
        self._answer_seconds = answer_seconds
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._failed_until = 0.0
        self._failure = ""

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        with self._lock:
            self._running()

    def check(
        self, kind: type[Message], data: bytes, max_filter_values: int, from_json: bool = False
    ) -> bytes | Refusal:
        """The request encoded anew when it passed, else its refusal."""
        header = {
            "module": kind.__module__,
            "name": kind.__qualname__,
            "max_filter_values": max_filter_values,
            "json": from_json,
        }
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            write, read = process.stdin.fileno(), process.stdout.fileno()
            deadline = time.monotonic() + self._answer_seconds
            try:
                _write(write, frame(json.dumps(header).encode()), deadline)
                _write(write, LENGTH.pack(len(data)), deadline)
                _write(write, data, deadline)
                answer = json.loads(_read_frame(read, deadline))
                if answer.get("passed"):
                    return _read_frame(read, deadline)
            except (WorkerLost, OSError, ValueError) as exc:
                self.stop()
                raise exc if isinstance(exc, WorkerLost) else WorkerLost() from exc
        return refusal_from_json(answer)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()

    def close(self) -> None:
        self._closed = True
        self.stop()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._closed:
            raise ShuttingDown(STOPPING)
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.stop()  # reap one that ended
        if time.monotonic() < self._failed_until:
            raise DecoderUnavailable(self._failure)
        try:
            process = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_worker_environment(),
                start_new_session=True,  # a Ctrl-C meant for the server is not the worker's
            )
        except OSError as exc:
            raise self._failed(f"cannot start the decoding worker: {exc}") from None
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        for pipe in (process.stdin, process.stdout):
            os.set_blocking(pipe.fileno(), False)
        try:
            hello = json.loads(
                _read_frame(process.stdout.fileno(), time.monotonic() + START_SECONDS)
            )
        except (WorkerLost, ValueError):
            hello = {}
        if hello.get("module") != runwire_server.__file__ or self._closed:
            self.stop()
            if self._closed:
                raise ShuttingDown(STOPPING)
            raise self._failed(
                f"the decoding worker did not start with the server's code ({hello or 'no answer'})"
            )
        return process

    def _failed(self, why: str) -> DecoderUnavailable:
        """A start that failed: the next is tried only a while later, and calls meanwhile are
        answered at once."""
        log.error("decoding.worker_failed", error=why)
        self._failure = why
        self._failed_until = time.monotonic() + RESTART_PAUSE_SECONDS
        return DecoderUnavailable(why)


def _wait(fd: int, event: int, deadline: float) -> None:
    poller = select.poll()
    poller.register(fd, event)
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not poller.poll(remaining * 1000):
        raise WorkerStuck


def _write(fd: int, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        _wait(fd, select.POLLOUT, deadline)
        try:
            view = view[os.write(fd, view[: 1 << 20]) :]
        except BlockingIOError:
            continue
        except BrokenPipeError:
            raise WorkerLost from None


def _read(fd: int, size: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while size:
        _wait(fd, select.POLLIN, deadline)
        try:
            chunk = os.read(fd, min(size, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise WorkerLost
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float) -> bytes:
    (length,) = LENGTH.unpack(_read(fd, LENGTH.size, deadline))
    return _read(fd, length, deadline)


class RequestDecoder:
    """Gives handlers their requests decoded and checked: Pending ones checked by `workers`
    processes first (none: on the event loop, which then has no protection from them)."""

    def __init__(
        self,
        workers: int,
        max_filter_values: int,
        *,
        command: Sequence[str] | None = None,
        answer_seconds: float | None = None,
    ) -> None:
        self._max_filter_values = max_filter_values
        self._answer_seconds = ANSWER_SECONDS if answer_seconds is None else answer_seconds
        self._workers = [
            _Worker(command or worker_command(), self._answer_seconds) for _ in range(workers)
        ]
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)
        self._waiting: Counter[str] = Counter()
        # Threads of their own: the exchanges with the workers never wait behind database
        # work, which runs in the default executor on SQLite. Twice as many as workers: a
        # cancelled call's exchange may still hold one while its worker is asked again.
        self._threads = ThreadPoolExecutor(max(1, 2 * workers), "runwire-decode")

    def warm(self) -> None:
        """Start the workers now rather than at the first large request."""
        for worker in self._workers:
            self._threads.submit(worker.start)

    async def checked(self, request: Any, client: str = "") -> Any:
        """The request, decoded if it was not yet, once it passed the checks that need nothing
        but the request; raises its refusal. `client` is whom it counts against. A client
        stream's requests pass as they are (see interceptors._decoded)."""
        if isinstance(request, Pending):
            return await self._decode(request, client)
        if isinstance(request, Undecodable):
            raise request.refusal()
        if isinstance(request, Message):
            check_request(request, self._max_filter_values)
        return request

    def processes(self) -> list[int]:
        """The process ids of the workers running now."""
        return [w.pid for w in self._workers if w.pid is not None]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _decode(self, pending: Pending, client: str) -> Message:
        if not self._workers:
            return decode_and_check(
                pending.kind, pending.data, self._max_filter_values, pending.json
            )
        encoded = await self._check_in_worker(pending, client)
        message = decode(pending.kind, encoded)
        if isinstance(message, Undecodable):  # the worker encoded it: not expected
            raise message.refusal()
        return message

    async def _check_in_worker(self, pending: Pending, client: str) -> bytes:
        """The request encoded anew by a worker. A worker that ended (killed, out of memory)
        or stuck is replaced and the request checked again; one that fails twice on the same
        request is taken to have failed because of it. A call cancelled meanwhile leaves its
        exchange to finish in its thread; the worker serves the next request after that."""
        if self._waiting[client] >= MAX_WAITING_PER_CLIENT or self._waiting.total() >= MAX_WAITING:
            raise ResourceExhausted(
                "DECODER_BUSY",
                f"{client or 'this client'} has {self._waiting[client]} and all clients "
                f"{self._waiting.total()} large requests waiting to be checked; send this one "
                "again when one is answered",
                metadata={"limit": str(MAX_WAITING_PER_CLIENT)},
            )
        self._waiting[client] += 1
        try:
            worker = await self._idle.get()
            try:
                return await self._exchange(worker, pending)
            finally:
                self._idle.put_nowait(worker)
        finally:
            self._waiting[client] -= 1
            if not self._waiting[client]:
                del self._waiting[client]

    async def _exchange(self, worker: _Worker, pending: Pending) -> bytes:
        loop = asyncio.get_running_loop()
        what = f"{len(pending.data)} bytes of {pending.kind.DESCRIPTOR.full_name}"
        failure: WorkerLost = WorkerLost()
        for attempt in (1, 2):
            try:
                exchange = loop.run_in_executor(
                    self._threads,
                    worker.check,
                    pending.kind,
                    pending.data,
                    self._max_filter_values,
                    pending.json,
                )
            except RuntimeError:  # the threads were shut down: the server is stopping
                raise ShuttingDown(STOPPING) from None
            try:
                answer = await exchange
            except WorkerLost as exc:
                failure = exc
                log.error(
                    "decoding.worker_lost",
                    request=what,
                    attempt=attempt,
                    stuck=isinstance(exc, WorkerStuck),
                )
                continue
            if not isinstance(answer, bytes):
                raise answer
            return answer
        why = (
            f"took the process checking it more than {self._answer_seconds:g} s"
            if isinstance(failure, WorkerStuck)
            else "stopped the process checking it"
        )
        raise UndecodableRequest(f"the request could not be checked: it {why}, twice ({what})")
