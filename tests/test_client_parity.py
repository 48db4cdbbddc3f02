"""AsyncClient offers every call of Client: the same names, parameters and value types."""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterator, Iterator
from typing import Any

from runwire import AsyncClient, Client

# Raw calls take the client's own stubs' methods (blocking or awaitable), so only their
# parameters' names, kinds and defaults must match.
RAW = frozenset(("call", "pages"))


def _public(cls: type) -> dict[str, Any]:
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_") and callable(getattr(cls, name))
    }


def _shape(parameter: inspect.Parameter, *, annotated: bool) -> tuple[Any, ...]:
    shape = (parameter.name, parameter.kind, parameter.default)
    return (*shape, parameter.annotation) if annotated else shape


def differences(blocking: type, awaitable: type) -> list[str]:
    """What keeps `awaitable` from offering the calls of `blocking`."""
    found: list[str] = []
    sync_methods, async_methods = _public(blocking), _public(awaitable)
    for name in sorted(sync_methods.keys() - async_methods.keys()):
        found.append(f"{awaitable.__name__} lacks {name}")
    for name in sorted(async_methods.keys() - sync_methods.keys()):
        found.append(f"{blocking.__name__} lacks {name}")
    for name in sorted(sync_methods.keys() & async_methods.keys()):
        sync_sig = inspect.signature(sync_methods[name], eval_str=True)
        async_sig = inspect.signature(async_methods[name], eval_str=True)
        annotated = name not in RAW
        sync_params = [_shape(p, annotated=annotated) for p in sync_sig.parameters.values()]
        async_params = [_shape(p, annotated=annotated) for p in async_sig.parameters.values()]
        if sync_params != async_params:
            found.append(f"{name}: parameters {sync_sig} != {async_sig}")
            continue
        returned = sync_sig.return_annotation
        if typing.get_origin(returned) is Iterator:
            expected = AsyncIterator[typing.get_args(returned)[0]]  # type: ignore[valid-type]
            is_async = not inspect.iscoroutinefunction(async_methods[name])
        else:
            expected = returned
            is_async = inspect.iscoroutinefunction(async_methods[name])
        if not is_async:
            found.append(f"{name}: {awaitable.__name__}'s is not awaitable or an async iterator")
        elif annotated and async_sig.return_annotation != expected:
            found.append(f"{name}: returns {async_sig.return_annotation}, not {expected}")
    return found


def test_async_client_has_every_method_of_client_with_the_same_signature() -> None:
    assert differences(Client, AsyncClient) == []


def test_the_constructors_take_the_same_arguments() -> None:
    assert inspect.signature(Client) == inspect.signature(AsyncClient)


def test_a_missing_or_different_method_is_found() -> None:
    class Lacking(AsyncClient):
        get_flow = None  # type: ignore[assignment]

    class Different(AsyncClient):
        async def count_flow_runs(self, criteria: Any = None, extra: int = 0) -> int:  # type: ignore[override]
            return 0

        def list_flows(self, *, page_size: int = 200) -> Any:  # type: ignore[override]
            return []

    assert "Lacking lacks get_flow" in differences(Client, Lacking)
    found = differences(Client, Different)
    assert any(line.startswith("count_flow_runs: parameters") for line in found), found
    assert any(line.startswith("list_flows: ") for line in found), found


def test_every_public_method_has_a_docstring() -> None:
    for cls in (Client, AsyncClient):
        for name, method in _public(cls).items():
            assert inspect.getdoc(method), f"{cls.__name__}.{name}"


def test_every_public_name_and_its_public_methods_have_docstrings() -> None:
    import runwire

    missing = []
    for name in runwire.__all__:
        value = getattr(runwire, name)
        if not inspect.getdoc(value):
            missing.append(name)
        if not inspect.isclass(value):
            continue
        for attribute, member in vars(value).items():
            if attribute.startswith("_"):
                continue
            if isinstance(member, classmethod | staticmethod):
                member = member.__func__
            elif isinstance(member, property):
                member = member.fget
            if callable(member) and not (member.__doc__ or "").strip():
                missing.append(f"{name}.{attribute}")
    assert missing == []
