"""The blocking Runwire client: the calls of `runwire._plans`, run over gRPC's sync channel."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import Token
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from runwire import _flow_runs, _flows, _limits, _logs, _server, _task_runs, _watch
from runwire._methods import returns, yields
from runwire._paging import PageWalk
from runwire._plans import SKIP, Guarded, Many, Op, Paged, Rpc, Stream, Unary
from runwire._streams import END, RECONNECT, Resume
from runwire._stubs import ServiceStubs
from runwire._transport import Transport
from runwire._values import OrchestrationResult, proposed_state
from runwire.connection import ConnectionSettings
from runwire.errors import RunwireError
from runwire.views import ViewClient, enter_client, leave_client

T = TypeVar("T")
ResponseT = TypeVar("ResponseT", bound=Message)


class Client(ServiceStubs):
    """A connection to a Runwire server.

    `address`, `token` and the TLS files default to the RUNWIRE_API_* variables (see
    runwire.connection), then to 127.0.0.1:50051 in plain text. Every call has a deadline
    (`timeout` seconds unless the call says otherwise); calls that are safe to repeat are
    retried with backoff while the server is UNAVAILABLE. TLS settings that do not fit the
    server's raise `TlsMismatch` (at once while the client has not connected yet). Use it as a
    context manager, or call `close()`; within `with Client(...) as client:` it is the
    current client, which views use when they are given none.
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
        self._transport = Transport(self.connection, timeout=timeout, retries=retries)
        self._attach_stubs(self._transport.channel)
        self._entered: list[Token[ViewClient | None]] = []

    def close(self) -> None:
        """Close the channel; calls in flight fail."""
        self._transport.close()

    def wait_until_ready(self, timeout: float = 5.0) -> None:
        """Connect now; raise Unavailable if the server cannot be reached within `timeout`,
        and TlsMismatch as soon as TLS settings are why it cannot."""
        self._transport.wait_until_ready(timeout)

    def __enter__(self) -> Client:
        self._entered.append(enter_client(self))
        return self

    def __exit__(self, *exc: object) -> None:
        # Left in another context than it was entered in: that one's current client stays.
        if self._entered:
            with contextlib.suppress(ValueError):
                leave_client(self._entered.pop())
        self.close()

    # --- raw calls ------------------------------------------------------------------------

    def call(
        self,
        method: Callable[..., ResponseT],
        request: Message,
        *,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> ResponseT:
        """Call one unary RPC of the stubs (`client.flow_runs.GetFlowRun`, ...) with a deadline,
        retrying UNAVAILABLE when it is safe to (`idempotent`)."""
        return self._transport.call(method, request, idempotent=idempotent, timeout=timeout)

    def pages(self, method: Callable[..., Any], request: Message, items: str) -> Iterator[Any]:
        """Every item (the response's `items` field) of a paged list RPC of the stubs,
        fetching the next page only when it is needed."""
        walk: PageWalk[Any] = PageWalk(request, items, _raw, None)
        while (page_request := walk.request()) is not None:
            yield from walk.take(self.call(method, page_request))

    # --- running plans --------------------------------------------------------------------

    def _stub(self, rpc: Rpc) -> Any:
        return getattr(getattr(self, rpc.service), rpc.method)

    def _unary(self, plan: Unary[T]) -> T:
        response = self._transport.call(
            self._stub(plan.rpc), plan.request, idempotent=plan.idempotent
        )
        return plan.convert(response, self)

    def _run(self, plan: Op[T]) -> T:
        if isinstance(plan, Unary):
            return self._unary(plan)
        steps = plan.steps(self)
        answer: Any = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as done:
                value: T = done.value
                return value
            answer = self._unary(step) if isinstance(step, Unary) else list(self._paged(step))

    def _iterate(self, plan: Many[T]) -> Iterator[T]:
        if isinstance(plan, Paged):
            return self._paged(plan)
        if isinstance(plan, Stream):
            return self._stream(plan)
        return self._guarded(plan)

    def _paged(self, plan: Paged[T]) -> Iterator[T]:
        walk = PageWalk.of(plan, self)
        method = self._stub(plan.rpc)
        while (request := walk.request()) is not None:
            yield from walk.take(self._transport.call(method, request))

    def _guarded(self, plan: Guarded[Any, T]) -> Iterator[T]:
        then = plan.then(self._unary(plan.first))
        if isinstance(then, Stream):
            yield from self._stream(then)
        else:
            yield from then

    def _stream(self, plan: Stream[T]) -> Iterator[T]:
        resume = Resume(plan, self, self.address)
        method = self._stub(plan.rpc)
        while True:
            call = self._transport.stream(method, resume.request())
            again = False
            try:
                for message in call:
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
                # The caller may stop early: end the call now rather than when collected.
                call.cancel()
            if not again:
                time.sleep(resume.delay(self._transport.away()))

    # --- the server -----------------------------------------------------------------------

    server_info = returns(_server.server_info)

    # --- flows and deployments ------------------------------------------------------------

    create_flow = returns(_flows.create_flow)
    get_flow = returns(_flows.get_flow)
    get_flow_by_name = returns(_flows.get_flow_by_name)
    list_flows = yields(_flows.list_flows)
    delete_flow = returns(_flows.delete_flow)
    create_deployment = returns(_flows.create_deployment)
    get_deployment = returns(_flows.get_deployment)
    list_deployments = yields(_flows.list_deployments)
    delete_deployment = returns(_flows.delete_deployment)

    # --- concurrency limits ---------------------------------------------------------------

    set_concurrency_limit = returns(_limits.set_concurrency_limit)
    get_concurrency_limit = returns(_limits.get_concurrency_limit)
    list_concurrency_limits = yields(_limits.list_concurrency_limits)
    delete_concurrency_limit = returns(_limits.delete_concurrency_limit)

    # --- flow runs ------------------------------------------------------------------------

    create_flow_run = returns(_flow_runs.create_flow_run)
    get_flow_run = returns(_flow_runs.get_flow_run)
    list_flow_runs = yields(_flow_runs.list_flow_runs)
    count_flow_runs = returns(_flow_runs.count_flow_runs)
    update_flow_run = returns(_flow_runs.update_flow_run)
    set_flow_run_state = returns(_flow_runs.set_flow_run_state)
    resume_flow_run = returns(_flow_runs.resume_flow_run)
    heartbeat_flow_run = returns(_flow_runs.heartbeat_flow_run)
    cancel_flow_run = returns(_flow_runs.cancel_flow_run)
    retry_flow_run = returns(_flow_runs.retry_flow_run)
    delete_flow_run = returns(_flow_runs.delete_flow_run)
    list_flow_run_states = returns(_flow_runs.list_flow_run_states)
    get_flow_run_history = returns(_flow_runs.get_flow_run_history)
    get_flow_run_graph = returns(_flow_runs.get_flow_run_graph)

    # --- task runs ------------------------------------------------------------------------

    create_task_run = returns(_task_runs.create_task_run)
    get_task_run = returns(_task_runs.get_task_run)
    list_task_runs = yields(_task_runs.list_task_runs)
    get_task_run_by_slug = returns(_task_runs.get_task_run_by_slug)
    get_task_run_result = returns(_task_runs.get_task_run_result)
    set_task_run_state = returns(_task_runs.set_task_run_state)
    heartbeat_task_run = returns(_task_runs.heartbeat_task_run)
    update_task_run = returns(_task_runs.update_task_run)
    list_task_run_states = returns(_task_runs.list_task_run_states)
    task_run_messages = returns(_task_runs.task_run_messages)

    # --- logs -----------------------------------------------------------------------------

    list_logs = yields(_logs.list_logs)
    write_logs = returns(_logs.write_logs)

    # --- watching -------------------------------------------------------------------------

    watch = yields(_watch.watch)
    watch_flow_runs = yields(_watch.watch_flow_runs)
    watch_flow_run = yields(_watch.watch_flow_run)


def _raw(item: Any, _: Any) -> Any:
    return item


__all__ = ["Client", "OrchestrationResult", "RunwireError", "proposed_state"]
