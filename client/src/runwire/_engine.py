"""Running a flow or a task against the server: every decision (claims, retries and their
delays, cache hits, tag-limit waits, cancellation) is the server's, and the code obeys it.

The engine is written once, as generators that yield what they need done (a call to the
server, a sleep, the user's function), and driven either by a blocking driver or by an
asyncio one, so that sync and async flows and tasks follow the same steps. The asyncio driver
makes its server calls in a thread, so that the event loop keeps running other tasks."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import pendulum

from runwire._futures import Call, TaskFuture, unmapped
from runwire._results import to_result
from runwire._run_context import (
    FlowRunContext,
    Reporter,
    RunCancelled,
    TaskRunContext,
    flow_run_context,
    install_capture,
    lease_seconds,
    task_run_context,
)
from runwire._task_reports import PendingReport, new_task_run_id, stamped
from runwire._task_runs import task_run_message
from runwire._values import OrchestrationResult, proposed_state
from runwire.states import State, StateType
from runwire.v1 import state_pb2

if TYPE_CHECKING:
    from runwire.client import Client


class FlowOptions(Protocol):
    """What the engine reads of a flow (runwire.Flow)."""

    fn: Callable[..., Any]
    name: str
    run_name: str | None
    retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    tags: tuple[str, ...]
    log_prints: bool


class TaskOptions(Protocol):
    """What the engine reads of a task (runwire.Task)."""

    fn: Callable[..., Any]
    name: str
    retries: int
    timeout_seconds: float | None
    tags: tuple[str, ...]
    cache_key_fn: Callable[[dict[str, Any]], str] | None
    cache_expiration: timedelta | None
    refresh_cache: bool
    log_prints: bool
    persist_result: bool | None

    def retry_delays(self) -> list[timedelta]: ...


@dataclass
class Io:
    """A blocking call to the server."""

    call: Callable[[], Any]


@dataclass
class Sleep:
    seconds: float


@dataclass
class Body:
    """The user's function, run with the run's context set."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None
    flow: FlowRunContext
    task: TaskRunContext | None = None


Op = Io | Sleep | Body
Steps = Generator[Op, Any, Any]


class RunRefused(RuntimeError):
    """The server did not let the run go on (an ABORT or a REJECT to a state that is not
    RUNNING); the message is its reason."""


def drive(steps: Steps) -> Any:
    """Run `steps` in this thread."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(op, Io):
                value = op.call()
            elif isinstance(op, Sleep):
                time.sleep(max(0.0, op.seconds))
            else:
                value = _call_blocking(op)
        except BaseException as exc:
            error = exc


async def adrive(steps: Steps) -> Any:
    """Run `steps` on the running event loop; the server calls run in a thread."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(op, Io):
                value = await asyncio.to_thread(op.call)
            elif isinstance(op, Sleep):
                await asyncio.sleep(max(0.0, op.seconds))
            else:
                value = await _call_async(op)
        except BaseException as exc:
            error = exc


def _call_blocking(op: Body) -> Any:
    def run() -> Any:
        flow_token = flow_run_context.set(op.flow)
        task_token = task_run_context.set(op.task)
        try:
            if inspect.iscoroutinefunction(op.fn):
                return asyncio.run(_with_timeout(op.fn(*op.args, **op.kwargs), op.timeout))
            return op.fn(*op.args, **op.kwargs)
        finally:
            task_run_context.reset(task_token)
            flow_run_context.reset(flow_token)

    if op.timeout is None:
        return run()
    # A timed function runs in a thread of its own, which is left behind if it overruns.
    result: Future[Any] = Future()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            result.set_result(context.run(run))
        except BaseException as exc:
            result.set_exception(exc)

    threading.Thread(target=work, name="runwire-timed", daemon=True).start()
    try:
        return result.result(timeout=op.timeout)
    except TimeoutError:
        raise TimeoutError(f"exceeded its timeout of {op.timeout:g} s") from None


async def _with_timeout(coroutine: Any, seconds: float | None) -> Any:
    if seconds is None:
        return await coroutine
    try:
        return await asyncio.wait_for(coroutine, seconds)
    except TimeoutError:
        raise TimeoutError(f"exceeded its timeout of {seconds:g} s") from None


async def _call_async(op: Body) -> Any:
    flow_token = flow_run_context.set(op.flow)
    task_token = task_run_context.set(op.task)
    try:
        if not inspect.iscoroutinefunction(op.fn):
            return op.fn(*op.args, **op.kwargs)
        body = asyncio.ensure_future(_with_timeout(op.fn(*op.args, **op.kwargs), op.timeout))
        if op.task is None:  # a flow's body: a cancellation on the server cancels it
            loop = asyncio.get_running_loop()

            def cancel() -> None:
                loop.call_soon_threadsafe(body.cancel)

            op.flow.reporter.on_cancel = cancel
            if op.flow.reporter.cancelling.is_set():
                body.cancel()
        return await body
    finally:
        task_run_context.reset(task_token)
        flow_run_context.reset(flow_token)


def _failure(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).strip()


def _retry_wait(state: State) -> float:
    """How long to wait before the retry an AwaitingRetry state schedules."""
    when = state.details.get("scheduled_time")
    if not when:
        return 0.0
    due = pendulum.parse(when)
    wait = (due - pendulum.now("UTC")).total_seconds()  # type: ignore[operator]
    return max(0.0, float(wait))


def jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as JSON, values JSON cannot hold shown by their repr."""
    return dict(json.loads(json.dumps(dict(values), default=repr)))


def flow_steps(
    flow: FlowOptions, client: Client, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Steps:
    """One call of a flow: its run made, claimed, run, and its end reported."""
    bound = inspect.signature(flow.fn).bind(*args, **kwargs)  # refused before anything is made
    bound.apply_defaults()
    parent = flow_run_context.get()
    parent_task_run_id = ""
    if parent is not None:  # a subflow: a task run of the parent stands for it
        key = parent.next_key(flow.name)
        stand_in = yield Io(
            lambda: client.create_task_run(parent.flow_run_id, flow.name, dynamic_key=key)
        )
        parent_task_run_id = stand_in.task_run_id
    made = yield Io(lambda: client.create_flow(flow.name, tags=flow.tags))
    run = yield Io(
        lambda: client.create_flow_run(
            made.flow_id,
            name=flow.run_name or "",
            parameters=jsonable(bound.arguments),
            tags=flow.tags,
            retries=flow.retries,
            retry_delay=flow.retry_delay_seconds,
            parent_task_run_id=parent_task_run_id,
        )
    )
    run_id = run.flow_run_id
    install_capture()
    reporter = Reporter(client, run_id)
    context = FlowRunContext(client, run_id, flow.name, flow.log_prints, reporter)
    reporter.start()
    try:
        while True:
            claim: OrchestrationResult = yield Io(
                lambda: client.set_flow_run_state(
                    run_id, proposed_state(StateType.RUNNING), lease=lease_seconds()
                )
            )
            if claim.status == "WAIT":
                yield Sleep(claim.delay.total_seconds() if claim.delay else 1.0)
                continue
            state = claim.state
            if state is None or state.type is not StateType.RUNNING:
                raise RunRefused(f"flow run {run_id}: {claim.reason or claim.status}")
            if context.calls:  # a retry: it calls its tasks by the same keys, whose runs exist
                context.calls.clear()
                context.batching = False
            try:
                value = yield Body(flow.fn, bound.args, bound.kwargs, flow.timeout_seconds, context)
                yield Io(lambda: _settle(context))
            except (RunCancelled, asyncio.CancelledError):
                yield Io(lambda: _settle(context, quiet=True))
                yield Io(
                    lambda: client.set_flow_run_state(
                        run_id, proposed_state(StateType.CANCELLED, message="Cancelled on request.")
                    )
                )
                raise RunCancelled(f"flow run {run_id} was cancelled") from None
            except Exception as exc:
                yield Io(lambda: _settle(context, quiet=True))
                failure = proposed_state(StateType.FAILED, message=_failure(exc))
                failed = yield Io(partial(client.set_flow_run_state, run_id, failure))
                if failed.state is not None and failed.state.type is StateType.SCHEDULED:
                    yield Sleep(_retry_wait(failed.state))
                    continue
                raise
            completed = proposed_state(StateType.COMPLETED, result=to_result(value))
            yield Io(partial(client.set_flow_run_state, run_id, completed))
            return value
    finally:
        yield Io(reporter.stop)
        if context.executor is not None:
            context.executor.shutdown(wait=False)


def _settle(context: FlowRunContext, *, quiet: bool = False) -> None:
    """Wait for the tasks the flow submitted, and for the reports of the tasks it ran, so that
    their states are written before the flow's. `quiet`: on the way to reporting a failure,
    which a report that failed too must not hide, it is only logged."""
    with context.lock:
        pending = list(context.futures)
    wait(pending)
    try:
        context.reporter.drain()
    except Exception as exc:
        if not quiet:
            raise
        logging.getLogger("runwire.reporter").warning("task runs not reported: %s", exc)


def task_steps(task: TaskOptions, context: FlowRunContext, call: Call) -> Steps:
    """One call of a task inside a flow run."""
    client = context.client
    if context.reporter.cancelling.is_set():
        raise RunCancelled(f"flow run {context.flow_run_id} is being cancelled")
    bound = inspect.signature(task.fn).bind(*call.args, **call.kwargs)
    bound.apply_defaults()
    upstream = yield Io(lambda: _resolve(context, call, bound))
    fields = {
        "dynamic_key": context.next_key(task.name),
        "map_index": call.map_index,
        "tags": task.tags,
        "retries": task.retries,
        "retry_delays": task.retry_delays(),
        "upstream": upstream,
    }
    cache_key = task.cache_key_fn(bound.arguments) if task.cache_key_fn else ""
    details: dict[str, Any] = {"cache_key": cache_key} if cache_key else {}
    if cache_key and task.refresh_cache:
        details["refresh_cache"] = True
    running = TaskRunContext("", task.name, task.log_prints or context.log_prints)
    if context.batching and not cache_key and not task.tags:
        # No rule can hold this task back: it starts now, and its run is reported in a batch.
        ran = yield from _batched_try(task, context, call, bound, fields, running)
        if ran.done:
            return ran.value
        task_run_id = call.task_run_id  # the server scheduled a retry
    else:
        made = yield Io(lambda: client.create_task_run(context.flow_run_id, task.name, **fields))
        task_run_id = call.task_run_id = made.task_run_id
        call.known.set()
    running = replace(running, task_run_id=task_run_id)
    while True:
        claim: OrchestrationResult = yield Io(
            lambda: client.set_task_run_state(
                task_run_id, proposed_state(StateType.RUNNING, **details), lease=lease_seconds()
            )
        )
        if claim.status == "WAIT":  # a tag's concurrency limit is full
            yield Sleep(claim.delay.total_seconds() if claim.delay else 1.0)
            continue
        state = claim.state
        if state is not None and state.type is StateType.COMPLETED:  # cached, or done before
            value = state.result.load() if state.result is not None else None
            context.remember(value, task_run_id)
            return value
        if state is None or state.type is not StateType.RUNNING:
            # Refused most often because the flow run is being cancelled: ask it now.
            yield Io(context.reporter.heartbeat)
            if context.reporter.cancelling.is_set():
                raise RunCancelled(f"flow run {context.flow_run_id} is being cancelled")
            raise RunRefused(f"task run {task_run_id}: {claim.reason or claim.status}")
        context.reporter.task_started(task_run_id)
        try:
            value = yield Body(
                task.fn, bound.args, bound.kwargs, task.timeout_seconds, context, running
            )
        except (RunCancelled, asyncio.CancelledError):
            yield Io(
                lambda: client.set_task_run_state(task_run_id, proposed_state(StateType.CANCELLED))
            )
            raise
        except Exception as exc:
            failure = proposed_state(StateType.FAILED, message=_failure(exc))
            failed = yield Io(partial(client.set_task_run_state, task_run_id, failure))
            if failed.state is not None and failed.state.type is StateType.SCHEDULED:
                yield Sleep(_retry_wait(failed.state))
                continue
            raise
        finally:
            context.reporter.task_ended(task_run_id)
        done = dict(details)
        done.pop("refresh_cache", None)
        if cache_key and task.cache_expiration is not None:
            done["cache_expiration"] = pendulum.now("UTC") + task.cache_expiration
        result = to_result(value, persist=task.persist_result is not False)
        completed = proposed_state(StateType.COMPLETED, result=result, **done)
        yield Io(partial(client.set_task_run_state, task_run_id, completed))
        context.remember(value, task_run_id)
        return value


@dataclass(frozen=True)
class _Ran:
    done: bool
    value: Any = None


def _batched_try(
    task: TaskOptions,
    context: FlowRunContext,
    call: Call,
    bound: inspect.BoundArguments,
    fields: dict[str, Any],
    running: TaskRunContext,
) -> Generator[Op, Any, _Ran]:
    """The first try of a task that starts without asking the server: its run is queued for
    the reporter, and ended there, unless it failed and the server has a retry for it."""
    reports = context.reporter.reports
    task_run_id = call.task_run_id = new_task_run_id()
    run = task_run_message(context.flow_run_id, task.name, task_run_id=task_run_id, **fields)
    report = yield Io(lambda: reports.start(run, lease_seconds()))
    call.known.set()
    try:
        value = yield Body(
            task.fn,
            bound.args,
            bound.kwargs,
            task.timeout_seconds,
            context,
            replace(running, task_run_id=task_run_id),
        )
    except (RunCancelled, asyncio.CancelledError):
        yield Io(lambda: _end(context, report, stamped(StateType.CANCELLED)))
        raise
    except Exception as exc:
        failure = stamped(StateType.FAILED, message=_failure(exc))
        failed = yield Io(lambda: _end(context, report, failure, wait=True))
        if failed is not None and failed.type is StateType.SCHEDULED:
            yield Sleep(_retry_wait(failed))
            return _Ran(False)
        raise
    result = to_result(value, persist=task.persist_result is not False)
    yield Io(lambda: _end(context, report, stamped(StateType.COMPLETED, result=result)))
    context.remember(value, task_run_id)
    return _Ran(True, value)


def _end(
    context: FlowRunContext, report: PendingReport, state: state_pb2.State, *, wait: bool = False
) -> State | None:
    """End a reported task run with `state`; with `wait`, return the state the server wrote."""
    reporter = context.reporter
    if reporter.reports.end(report, state):
        return reporter.reports.wait(report).result.state if wait else None
    # Sent open: the task run is running on the server, and its end is proposed here.
    reporter.reports.wait(report)
    try:
        return context.client.set_task_run_state(report.task_run_id, state).state
    finally:
        reporter.task_ended(report.task_run_id)


def _resolve(
    context: FlowRunContext, call: Call, bound: inspect.BoundArguments
) -> dict[str, list[str]]:
    """Replace futures among the bound arguments by their results; return, for each
    argument, the task runs its value came from."""
    upstream: dict[str, list[str]] = {}

    def value_of(name: str, value: Any) -> Any:
        if isinstance(value, unmapped):
            value = value.value
        if isinstance(value, TaskFuture):
            result = value.result()
            upstream.setdefault(name, []).append(value.task_run_id)
            return result
        origin = context.origin(value)
        if origin is not None:
            upstream.setdefault(name, []).append(origin)
            return value
        if isinstance(value, (list, tuple)):
            items = [value_of(name, item) for item in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                return type(value)(items)  # futures inside replaced by their results
        return value

    for name, value in list(bound.arguments.items()):
        bound.arguments[name] = value_of(name, value)
    names = list(bound.signature.parameters)
    for where, task_run_id in call.mapped_from.items():
        name = names[where] if isinstance(where, int) and where < len(names) else str(where)
        upstream.setdefault(name, []).append(task_run_id)
    return upstream


def delays(
    value: float | list[float] | Callable[[int], list[float]], retries: int
) -> list[timedelta]:
    """Retry delays as the server takes them: one per retry (the last one repeats)."""
    if callable(value):
        value = value(retries)
    if isinstance(value, (int, float)):
        return [timedelta(seconds=value)]
    return [timedelta(seconds=v) for v in value]
