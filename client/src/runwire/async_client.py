"""AsyncClient: the same calls as `Client`, awaitable, for asyncio programs.

Each call runs the synchronous client's call on a worker thread (gRPC's synchronous channel is
thread-safe), so both clients share one implementation of deadlines, retries and error mapping.
Streams are async iterators fed from a worker thread; leaving the loop early stops the stream.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from runwire.client import Client
from runwire.views import FlowRunLog, FlowRunView, FlowView

P = ParamSpec("P")
T = TypeVar("T")
_DONE = object()


class AsyncClient:
    """Awaitable access to a Runwire server; takes the same arguments as `Client`.

    Returned view objects are the same immutable views as the synchronous client's; the
    methods that fetch more data from them (`get_logs`, `get_task_run`, ...) are synchronous:
    call them through `asyncio.to_thread` in async code.
    """

    def __init__(self, address: str | None = None, **options: Any) -> None:
        self.sync = Client(address, **options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.sync.close()

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    async def _stream(self, make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
        stop = threading.Event()

        def pump() -> None:
            try:
                for item in make():
                    if stop.is_set():
                        return
                    asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
            except BaseException as exc:  # handed to the consumer below
                asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()
            else:
                asyncio.run_coroutine_threadsafe(queue.put(_DONE), loop).result()

        worker = loop.run_in_executor(None, pump)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while not worker.done():  # unblock the pump if it waits on a full queue
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.sleep(0.01)

    # --- the calls --------------------------------------------------------------------------

    async def create_flow(self, name: str, **fields: Any) -> FlowView:
        return await self._run(self.sync.create_flow, name, **fields)

    async def get_flow(self, flow_id: str) -> FlowView:
        return await self._run(self.sync.get_flow, flow_id)

    async def create_flow_run(self, flow_id: str, **fields: Any) -> FlowRunView:
        return await self._run(self.sync.create_flow_run, flow_id, **fields)

    async def get_flow_run(self, flow_run_id: str) -> FlowRunView:
        return await self._run(self.sync.get_flow_run, flow_run_id)

    async def set_flow_run_state(self, flow_run_id: str, state: Any, *, force: bool = False) -> Any:
        return await self._run(self.sync.set_flow_run_state, flow_run_id, state, force=force)

    async def resume_flow_run(self, flow_run_id: str) -> Any:
        return await self._run(self.sync.resume_flow_run, flow_run_id)

    async def cancel_flow_run(self, flow_run_id: str) -> Any:
        return await self._run(self.sync.cancel_flow_run, flow_run_id)

    async def delete_flow_run(self, flow_run_id: str) -> None:
        await self._run(self.sync.delete_flow_run, flow_run_id)

    async def write_logs(self, flow_run_id: str, *entries: tuple[int, str]) -> None:
        await self._run(self.sync.write_logs, flow_run_id, *entries)

    def list_flow_runs(self, criteria: Any = None, **options: Any) -> AsyncIterator[FlowRunView]:
        return self._stream(lambda: self.sync.list_flow_runs(criteria, **options))

    def list_logs(self, flow_run_id: str, **options: Any) -> AsyncIterator[FlowRunLog]:
        return self._stream(lambda: self.sync.list_logs(flow_run_id, **options))

    def watch(self, flow_run_id: str, **options: Any) -> AsyncIterator[Any]:
        """The run's events (WatchFlowRunResponse messages), resumed across reconnects."""
        return self._stream(lambda: self.sync.watch(flow_run_id, **options))

    def watch_flow_run(self, flow_run_id: str, **options: Any) -> AsyncIterator[FlowRunLog]:
        """The async variant of `runwire.watch_flow_run`."""
        from runwire.watching import watch_flow_run

        return self._stream(lambda: watch_flow_run(flow_run_id, client=self.sync, **options))
