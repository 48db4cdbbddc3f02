"""`@runwire.flow` and `@runwire.task`: functions that report themselves to the server as flow
runs and task runs (the steps are in runwire._engine)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from runwire._engine import adrive, delays, drive, flow_steps, task_steps
from runwire._futures import Call, TaskFuture
from runwire._run_context import FlowRunContext, flow_run_context

P = ParamSpec("P")
R = TypeVar("R")
RetryDelay = float | Sequence[float] | Callable[[int], list[float]]


_default_lock = threading.Lock()
_default: list[Any] = []


def _current_client() -> Any:
    """The client in use (`with Client(...)`), else one made once from the RUNWIRE_API_*
    variables and kept for the process."""
    from runwire.client import Client
    from runwire.errors import NoClient
    from runwire.views import current_client

    try:
        return current_client(None)
    except NoClient:
        with _default_lock:
            if not _default:
                _default.append(Client())
            return _default[0]


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Flow(Generic[P, R]):
    """A function that, called, runs as a flow run of the flow named `name`."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        run_name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: float = 0,
        timeout_seconds: float | None = None,
        tags: Iterable[str] = (),
        log_prints: bool = False,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.run_name = run_name
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.tags = tuple(tags)
        self.log_prints = log_prints
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        parent = flow_run_context.get()
        client = parent.client if parent is not None else _current_client()
        steps = flow_steps(self, client, args, kwargs)
        if inspect.iscoroutinefunction(self.fn):
            return adrive(steps)  # type: ignore[return-value]
        return drive(steps)  # type: ignore[no-any-return]


class Task(Generic[P, R]):
    """A function that, called inside a flow run, runs as one of its task runs. Outside a
    flow it is the plain function."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: RetryDelay = 0,
        timeout_seconds: float | None = None,
        tags: Iterable[str] = (),
        cache_key_fn: Callable[[dict[str, Any]], str] | None = None,
        cache_expiration: timedelta | None = None,
        refresh_cache: bool = False,
        log_prints: bool = False,
        persist_result: bool | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.tags = tuple(tags)
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.log_prints = log_prints
        self.persist_result = persist_result
        functools.update_wrapper(self, fn)

    def retry_delays(self) -> list[timedelta]:
        """The wait before each retry, as the task run's policy gives them to the server."""
        return delays(self.retry_delay_seconds, self.retries)  # type: ignore[arg-type]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        context = flow_run_context.get()
        if context is None:
            return self.fn(*args, **kwargs)
        steps = task_steps(self, context, Call(args, dict(kwargs)))
        if not inspect.iscoroutinefunction(self.fn):
            return drive(steps)  # type: ignore[no-any-return]
        if _in_loop():
            return adrive(steps)  # type: ignore[return-value]
        return asyncio.run(adrive(steps))  # type: ignore[no-any-return]  # in a sync flow

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]:
        """Run the task in the background (a thread of the flow run) and return its future."""
        return self._start(Call(args, dict(kwargs)))

    def map(self, *args: Any, **kwargs: Any) -> list[TaskFuture[R]]:
        """One task run per element of the iterable arguments (`unmapped(x)` passes x whole
        to each), with map_index 0, 1, 2, ...; their futures in that order."""
        lengths = {
            len(value)
            for value in (*args, *kwargs.values())
            if isinstance(value, (list, tuple, range))
        }
        if len(lengths) != 1:
            raise ValueError("map needs iterable arguments (lists, tuples, ranges) of one length")
        (count,) = lengths

        def pick(value: Any, index: int) -> Any:
            return value[index] if isinstance(value, (list, tuple, range)) else value

        context = flow_run_context.get()
        mapped_from: dict[int | str, str] = {}
        if context is not None:
            places: list[tuple[int | str, Any]] = [*enumerate(args), *kwargs.items()]
            for where, value in places:
                origin = context.origin(value)
                if origin is not None:
                    mapped_from[where] = origin
        return [
            self._start(
                Call(
                    tuple(pick(a, i) for a in args),
                    {k: pick(v, i) for k, v in kwargs.items()},
                    map_index=i,
                    mapped_from=mapped_from,
                )
            )
            for i in range(count)
        ]

    def _start(self, call: Call) -> TaskFuture[R]:
        context = flow_run_context.get()
        future: Future[R] = Future()
        if context is None:
            try:
                future.set_result(self.fn(*call.args, **call.kwargs))
            except Exception as exc:
                future.set_exception(exc)
            call.known.set()
            return TaskFuture(future, call)
        running = context.pool().submit(
            contextvars.copy_context().run, self._blocking, context, call
        )
        with context.lock:
            context.futures.append(running)
        return TaskFuture(running, call)

    def _blocking(self, context: FlowRunContext, call: Call) -> R:
        steps = task_steps(self, context, call)
        if inspect.iscoroutinefunction(self.fn):
            return asyncio.run(adrive(steps))  # type: ignore[no-any-return]
        return drive(steps)  # type: ignore[no-any-return]


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...
@overload
def flow(
    *,
    name: str | None = None,
    run_name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 0,
    timeout_seconds: float | None = None,
    tags: Iterable[str] = (),
    log_prints: bool = False,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...
def flow(fn: Any = None, /, **options: Any) -> Any:
    """Make a function a flow: each call is a flow run that reports its states, its task
    runs and its logs to the server (`RUNWIRE_API_URL`, or the client in use)."""
    if fn is None:
        return lambda f: Flow(f, **options)
    return Flow(fn, **options)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelay = 0,
    timeout_seconds: float | None = None,
    tags: Iterable[str] = (),
    cache_key_fn: Callable[[dict[str, Any]], str] | None = None,
    cache_expiration: timedelta | None = None,
    refresh_cache: bool = False,
    log_prints: bool = False,
    persist_result: bool | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Any = None, /, **options: Any) -> Any:
    """Make a function a task: called inside a flow, each call is a task run of it."""
    if fn is None:
        return lambda f: Task(f, **options)
    return Task(fn, **options)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Retry delays that double: backoff_factor, 2x, 4x, ... seconds, one per retry."""
    return lambda retries: [backoff_factor * 2**i for i in range(max(retries, 1))]
