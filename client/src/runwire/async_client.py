"""AsyncClient: the same calls as `Client`, awaitable, over a native `grpc.aio` channel.

Both clients are made from the same plans (`runwire._plans`), so every method of `Client` is
here with the same name and parameters; values come back from `await`, and lists and streams
are async iterators. Views it returns fetch more data with blocking calls, through a `Client`
of the same settings that it opens when a view first needs one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from runwire import _flow_runs, _flows, _limits, _logs, _server, _task_runs, _watch
from runwire._aio_transport import AioTransport
from runwire._methods import async_yields, awaits
from runwire._paging import PageWalk
from runwire._plans import SKIP, Guarded, Many, Op, Paged, Rpc, Stream, Unary
from runwire._streams import END, RECONNECT, Resume
from runwire._stubs import ServiceStubs
from runwire.client import Client
from runwire.connection import ConnectionSettings

T = TypeVar("T")
ResponseT = TypeVar("ResponseT", bound=Message)


class _ViewsClient:
    """What the views an AsyncClient returns fetch more with: their methods are blocking, so
    they call through a `Client` of the same settings, opened when a view first needs it and
    closed with the AsyncClient."""

    def __init__(self, open_client: Callable[[], Client]) -> None:
        self._open = open_client
        self._client: Client | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._open()
        return getattr(self._client, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class AsyncClient(ServiceStubs):
    """Awaitable access to a Runwire server; takes the same arguments as `Client`.

    The channel is made when the client is, and must be used from one event loop; use it as
    an async context manager, or `await close()`. Methods take the parameters of `Client`'s;
    every call has the client's deadline (`timeout`), which the server also honours, and
    `call` takes one of its own.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        token: str | None = None,
        tls: bool | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        root_certificates: bytes | None = None,
    ) -> None:
        self.connection = ConnectionSettings.resolve(
            address=address,
            token=token,
            tls=tls,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            root_certificates=root_certificates,
        )
        self.address = self.connection.address
        self.timeout = timeout
        self.retries = retries
        self._transport = AioTransport(self.connection, timeout=timeout, retries=retries)
        self._attach_stubs(self._transport.channel)
        self._views = _ViewsClient(
            lambda: Client(
                address,
                timeout=timeout,
                retries=retries,
                token=token,
                tls=tls,
                ca_file=ca_file,
                cert_file=cert_file,
                key_file=key_file,
                root_certificates=root_certificates,
            )
        )

    async def close(self) -> None:
        """Close the channel (and the views' blocking client, if one was opened); calls in
        flight fail."""
        await self._transport.close()
        self._views.close()

    async def wait_until_ready(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Connect now; raise Unavailable if the server cannot be reached within `timeout`,
        and TlsMismatch as soon as TLS settings are why it cannot."""
        await self._transport.wait_until_ready(timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- raw calls ------------------------------------------------------------------------

    async def call(
        self,
        method: Callable[..., Awaitable[ResponseT]],
        request: Message,
        *,
        idempotent: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 (a gRPC deadline, as Client's)
    ) -> ResponseT:
        """Call one unary RPC of the stubs (`client.flow_runs.GetFlowRun`, ...) with a deadline,
        retrying UNAVAILABLE when it is safe to (`idempotent`)."""
        return await self._transport.call(method, request, idempotent=idempotent, timeout=timeout)

    async def pages(
        self, method: Callable[..., Awaitable[Any]], request: Message, items: str
    ) -> AsyncIterator[Any]:
        """Every item (the response's `items` field) of a paged list RPC of the stubs,
        fetching the next page only when it is needed."""
        walk: PageWalk[Any] = PageWalk(request, items, _raw, None)
        while (page_request := walk.request()) is not None:
            for item in walk.take(await self.call(method, page_request)):
                yield item

    # --- running plans --------------------------------------------------------------------

    def _stub(self, rpc: Rpc) -> Any:
        return getattr(getattr(self, rpc.service), rpc.method)

    async def _unary(self, plan: Unary[T]) -> T:
        response = await self._transport.call(
            self._stub(plan.rpc), plan.request, idempotent=plan.idempotent
        )
        return plan.convert(response, self._views)

    async def _run(self, plan: Op[T]) -> T:
        if isinstance(plan, Unary):
            return await self._unary(plan)
        steps = plan.steps(self._views)
        answer: Any = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as done:
                value: T = done.value
                return value
            if isinstance(step, Unary):
                answer = await self._unary(step)
            else:
                answer = [item async for item in self._paged(step)]

    def _iterate(self, plan: Many[T]) -> AsyncIterator[T]:
        if isinstance(plan, Paged):
            return self._paged(plan)
        if isinstance(plan, Stream):
            return self._stream(plan)
        return self._guarded(plan)

    async def _paged(self, plan: Paged[T]) -> AsyncIterator[T]:
        walk = PageWalk.of(plan, self._views)
        method = self._stub(plan.rpc)
        while (request := walk.request()) is not None:
            for item in walk.take(await self._transport.call(method, request)):
                yield item

    async def _guarded(self, plan: Guarded[Any, T]) -> AsyncIterator[T]:
        then = plan.then(await self._unary(plan.first))
        if isinstance(then, Stream):
            async for item in self._stream(then):
                yield item
        else:
            for item in then:
                yield item

    async def _stream(self, plan: Stream[T]) -> AsyncIterator[T]:
        resume = Resume(plan, self._views, self.address)
        method = self._stub(plan.rpc)
        while True:
            call = await self._transport.stream(method, resume.request())
            again = False
            try:
                async for message in call:
                    value = resume.message(message)
                    if value is END:
                        return
                    if value is RECONNECT:
                        break
                    if value is not SKIP:
                        yield value
            except grpc.RpcError as exc:
                again = resume.failed(self._transport.error(exc))
            finally:
                # When the stream ends or fails, or the caller closes this iterator (aclose(), or
                # contextlib.aclosing): one that merely stops iterating leaves it to the collector.
                call.cancel()
            if not again:
                await asyncio.sleep(resume.delay(self._transport.away()))

    # --- the server -----------------------------------------------------------------------

    server_info = awaits(_server.server_info)

    # --- flows and deployments ------------------------------------------------------------

    create_flow = awaits(_flows.create_flow)
    get_flow = awaits(_flows.get_flow)
    get_flow_by_name = awaits(_flows.get_flow_by_name)
    list_flows = async_yields(_flows.list_flows)
    delete_flow = awaits(_flows.delete_flow)
    create_deployment = awaits(_flows.create_deployment)
    get_deployment = awaits(_flows.get_deployment)
    list_deployments = async_yields(_flows.list_deployments)
    delete_deployment = awaits(_flows.delete_deployment)

    # --- concurrency limits ---------------------------------------------------------------

    set_concurrency_limit = awaits(_limits.set_concurrency_limit)
    get_concurrency_limit = awaits(_limits.get_concurrency_limit)
    list_concurrency_limits = async_yields(_limits.list_concurrency_limits)
    delete_concurrency_limit = awaits(_limits.delete_concurrency_limit)

    # --- flow runs ------------------------------------------------------------------------

    create_flow_run = awaits(_flow_runs.create_flow_run)
    get_flow_run = awaits(_flow_runs.get_flow_run)
    list_flow_runs = async_yields(_flow_runs.list_flow_runs)
    count_flow_runs = awaits(_flow_runs.count_flow_runs)
    update_flow_run = awaits(_flow_runs.update_flow_run)
    set_flow_run_state = awaits(_flow_runs.set_flow_run_state)
    resume_flow_run = awaits(_flow_runs.resume_flow_run)
    heartbeat_flow_run = awaits(_flow_runs.heartbeat_flow_run)
    cancel_flow_run = awaits(_flow_runs.cancel_flow_run)
    retry_flow_run = awaits(_flow_runs.retry_flow_run)
    delete_flow_run = awaits(_flow_runs.delete_flow_run)
    list_flow_run_states = awaits(_flow_runs.list_flow_run_states)
    get_flow_run_history = awaits(_flow_runs.get_flow_run_history)
    get_flow_run_graph = awaits(_flow_runs.get_flow_run_graph)

    # --- task runs ------------------------------------------------------------------------

    create_task_run = awaits(_task_runs.create_task_run)
    get_task_run = awaits(_task_runs.get_task_run)
    list_task_runs = async_yields(_task_runs.list_task_runs)
    get_task_run_by_slug = awaits(_task_runs.get_task_run_by_slug)
    get_task_run_result = awaits(_task_runs.get_task_run_result)
    set_task_run_state = awaits(_task_runs.set_task_run_state)
    heartbeat_task_run = awaits(_task_runs.heartbeat_task_run)
    update_task_run = awaits(_task_runs.update_task_run)
    list_task_run_states = awaits(_task_runs.list_task_run_states)
    task_run_messages = awaits(_task_runs.task_run_messages)

    # --- logs -----------------------------------------------------------------------------

    list_logs = async_yields(_logs.list_logs)
    write_logs = awaits(_logs.write_logs)

    # --- watching -------------------------------------------------------------------------

    watch = async_yields(_watch.watch)
    watch_flow_runs = async_yields(_watch.watch_flow_runs)
    watch_flow_run = async_yields(_watch.watch_flow_run)


def _raw(item: Any, _: Any) -> Any:
    return item
