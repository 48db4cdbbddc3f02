"""Requests checked before a handler runs; large ones in worker processes, before the event
loop decodes them.

Decoding holds the event loop (upb keeps the GIL), and what it costs depends on what a request
holds more than on its size: 4 MiB of map entries took most of a second, 4 MiB of one string a
fraction of a millisecond. A request that may hold more entries than the server decodes on its
event loop (decoding.Pending) is decoded first by a worker (api.decode_worker), which counts its
entries and makes the checks that need no database (enum values, filters); only a request that
passes them is decoded again on the event loop, where it then costs a few milliseconds at most.
A client that sends many such requests keeps the workers busy: other large requests wait for
them, and nothing else does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from google.protobuf.message import Message

from runwire_server.api.decode_worker import (
    check_request,
    decode_and_check,
    read_frame,
    refusal_from_json,
    write_frame,
)
from runwire_server.api.decoding import Pending, Undecodable, decode
from runwire_server.errors import InvalidArgument, UndecodableRequest

log = structlog.get_logger("runwire.decoding")
Refusal = InvalidArgument | UndecodableRequest


class WorkerLost(Exception):
    """The worker process ended before it answered."""


class _Worker:
    """One worker process and the pipes to it, used by one thread at a time. The process is
    started when it is first needed, and again after it ended."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        with self._lock:
            self._running()

    def check(self, kind: type[Message], data: bytes, max_filter_values: int) -> Refusal | None:
        header = {
            "module": kind.__module__,
            "name": kind.__qualname__,
            "max_filter_values": max_filter_values,
        }
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                write_frame(process.stdin, json.dumps(header).encode())
                write_frame(process.stdin, data)
                process.stdin.flush()
                answer = read_frame(process.stdout)
            except (OSError, ValueError):  # a pipe broken, or closed by stop()
                answer = None
            if answer is None:
                self.stop()
                raise WorkerLost
        return refusal_from_json(json.loads(answer))

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
            raise WorkerLost
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "runwire_server.api.decode_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._process


class RequestDecoder:
    """Gives handlers their requests decoded and checked: Pending ones checked by `workers`
    processes first (none: on the event loop, for a server that must not start processes)."""

    def __init__(self, workers: int, max_filter_values: int) -> None:
        self._max_filter_values = max_filter_values
        self._workers = [_Worker() for _ in range(workers)]
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)
        # Threads of their own: the exchanges with the workers never wait behind database
        # work, which runs in the default executor on SQLite.
        self._threads = ThreadPoolExecutor(max(1, workers), "runwire-decode")

    def warm(self) -> None:
        """Start the workers now rather than at the first large request."""
        for worker in self._workers:
            self._threads.submit(worker.start)

    async def checked(self, request: Any) -> Any:
        """The request, decoded if it was not yet, once it passed the checks that need nothing
        but the request; raises its refusal. A client stream's requests pass as they are (see
        interceptors._decoded)."""
        if isinstance(request, Pending):
            return await self._decode(request)
        if isinstance(request, Undecodable):
            raise request.refusal()
        if isinstance(request, Message):
            check_request(request, self._max_filter_values)
        return request

    async def _decode(self, pending: Pending) -> Message:
        if not self._workers:
            return decode_and_check(pending.kind, pending.data, self._max_filter_values)
        refusal = await self._check_in_worker(pending)
        if refusal is not None:
            raise refusal
        message = decode(pending.kind, pending.data)
        if isinstance(message, Undecodable):  # the worker decoded it: not expected
            raise message.refusal()
        return message

    async def _check_in_worker(self, pending: Pending) -> Refusal | None:
        """A worker's answer. A worker that ended (killed, out of memory) is started again and
        the request checked again; one that ends twice on the same request is taken to have
        ended because of it. A call cancelled meanwhile leaves its exchange to finish in its
        thread, and the worker serves the next request after that."""
        loop = asyncio.get_running_loop()
        worker = await self._idle.get()
        try:
            for attempt in (1, 2):
                try:
                    return await loop.run_in_executor(
                        self._threads,
                        worker.check,
                        pending.kind,
                        pending.data,
                        self._max_filter_values,
                    )
                except WorkerLost:
                    log.error(
                        "decoding.worker_lost",
                        request=pending.kind.DESCRIPTOR.full_name,
                        bytes=len(pending.data),
                        attempt=attempt,
                    )
        finally:
            self._idle.put_nowait(worker)
        return UndecodableRequest(
            f"the request could not be checked: the process decoding it ended twice "
            f"({len(pending.data)} bytes of {pending.kind.DESCRIPTOR.full_name})"
        )

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def processes(self) -> list[int]:
        """The process ids of the workers running now."""
        return [w.pid for w in self._workers if w.pid is not None]
