"""Client methods made from plan functions: one plan, a blocking and an awaitable method.

`Client.get_flow = returns(flows.get_flow)` makes a method with the plan function's name,
parameters and docstring, returning what the plan's answer gives; `AsyncClient.get_flow =
awaits(flows.get_flow)` makes the same method as a coroutine. `yields` and `async_yields` do
the same for lists and streams (an iterator, an async iterator). Type checkers see the plan's
own parameters (ParamSpec), and `inspect.signature` the method's, so that the clients' methods
document themselves, and tests/test_client_parity.py compares them.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from runwire._plans import Many, Op

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _value_type(plan: Callable[..., Any]) -> Any:
    """T of a plan function that returns Unary[T], Steps[T], Paged[T], Stream[T] or
    Guarded[R, T]."""
    hint = typing.get_type_hints(plan)["return"]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = typing.get_args(hint)[0]
    value = typing.get_args(hint)[-1]
    return None if value is type(None) else value


def _like(method: F, plan: Callable[..., Any], returned: Any) -> F:
    signature = inspect.signature(plan, eval_str=True)
    itself = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[itself, *signature.parameters.values()], return_annotation=returned
    )
    method.__name__ = method.__qualname__ = plan.__name__
    method.__doc__ = plan.__doc__
    method.__module__ = plan.__module__
    return method


def returns(plan: Callable[P, Op[T]]) -> Callable[Concatenate[Any, P], T]:
    """A blocking client method that runs the plan and returns its value."""

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        value: T = self._run(plan(*args, **kwargs))
        return value

    return _like(method, plan, _value_type(plan))


def yields(plan: Callable[P, Many[T]]) -> Callable[Concatenate[Any, P], Iterator[T]]:
    """A blocking client method that iterates over the plan's values."""

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        values: Iterator[T] = self._iterate(plan(*args, **kwargs))
        return values

    return _like(method, plan, Iterator[_value_type(plan)])  # type: ignore[misc]


def awaits(plan: Callable[P, Op[T]]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """An asyncio client method that runs the plan and returns its value."""

    async def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        value: T = await self._run(plan(*args, **kwargs))
        return value

    return _like(method, plan, _value_type(plan))


def async_yields(plan: Callable[P, Many[T]]) -> Callable[Concatenate[Any, P], AsyncIterator[T]]:
    """An asyncio client method that iterates over the plan's values (`async for`)."""

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        values: AsyncIterator[T] = self._iterate(plan(*args, **kwargs))
        return values

    return _like(method, plan, AsyncIterator[_value_type(plan)])  # type: ignore[misc]
