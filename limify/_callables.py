"""Inspecting what ``@rate_limit`` decorates: sync or async, and where the key is.

Both questions are answered once, at decoration time.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = [
    "is_async_callable",
    "reject_generators",
    "KeyGetter",
    "key_getter",
    "display_name",
    "takes_bound_instance",
    "call_arguments",
]

# (instance, args, kwargs) as wrapt passes them -> the key value
KeyGetter = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]


def _layers(obj: Any) -> list[Any]:
    """``obj`` and what it delegates to through descriptors, partials and bound methods."""
    layers = []
    for _ in range(100):  # a bound on pathological self-referencing wrappers
        layers.append(obj)
        if isinstance(obj, (classmethod, staticmethod)) or inspect.ismethod(obj):
            obj = obj.__func__
        elif isinstance(obj, functools.partial):
            obj = obj.func
        else:
            break
    return layers


def _target(obj: Any) -> Any:
    """The function whose code runs when ``obj`` is called."""
    inner = _layers(obj)[-1]
    if inspect.isfunction(inner) or inspect.isbuiltin(inner) or inspect.isclass(inner):
        return inner
    call = getattr(type(inner), "__call__", None)
    return call if call is not None else inner


def is_async_callable(obj: Any) -> bool:
    """True when calling ``obj`` returns an awaitable coroutine.

    Looks through classmethod, staticmethod, ``functools.partial`` and bound
    methods (``inspect.iscoroutinefunction`` does not see through a classmethod on
    3.11), and at ``__call__`` for callable objects.
    """
    if any(inspect.iscoroutinefunction(layer) for layer in _layers(obj)):
        return True
    return inspect.iscoroutinefunction(_target(obj))


def reject_generators(obj: Any) -> None:
    """Raise ``TypeError`` for generator and async-generator functions.

    A limit on a generator function would only guard the creation of the
    generator, not the work done while iterating it.
    """
    target = _target(obj)
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        kind = "an async generator" if inspect.isasyncgenfunction(target) else "a generator"
        raise TypeError(
            f"@rate_limit cannot decorate {display_name(obj)}: it is {kind} function, whose "
            "work happens while iterating, not when called; limit the function that "
            "consumes it, or check a limit inside the loop"
        )


def display_name(obj: Any) -> str:
    """A readable name for error messages."""
    inner = _layers(obj)[-1]
    return getattr(inner, "__qualname__", None) or type(inner).__qualname__


def _signature(obj: Any) -> inspect.Signature:
    # For classmethods, staticmethods and functions used as methods, the key
    # getter sees the arguments the underlying function receives (self/cls first).
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    return inspect.signature(obj)


def takes_bound_instance(obj: Any) -> bool:
    """True when the decorated function receives wrapt's ``instance`` as its first argument.

    wrapt hands over ``instance`` separately for methods and classmethods; the
    function itself receives it first. Not so for staticmethods and callable
    objects (whose own ``self`` is not in their signature).
    """
    if isinstance(obj, staticmethod):
        return False
    return isinstance(obj, classmethod) or inspect.isfunction(obj)


def call_arguments(with_instance: bool, instance: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The positional arguments the decorated function itself receives."""
    if with_instance and instance is not None:
        return (instance, *args)
    return args


def key_getter(obj: Any, key: Any) -> KeyGetter | None:
    """Build the per-call key extractor for ``key=`` (None, a parameter name, a callable).

    Raises:
        ValueError: ``key`` names no parameter of ``obj``.
        TypeError: ``key`` is neither None, a str nor a callable.
    """
    if key is None:
        return None
    with_instance = takes_bound_instance(obj)
    if callable(key):

        def from_callable(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return key(*call_arguments(with_instance, instance, args), **kwargs)

        return from_callable
    if not isinstance(key, str):
        raise TypeError(
            f"key must be None, a parameter name or a callable, got {key!r} for {display_name(obj)}"
        )
    return _parameter_getter(obj, key, with_instance)


def _parameter_getter(obj: Any, name: str, with_instance: bool) -> KeyGetter:
    signature = _signature(obj)
    param = signature.parameters.get(name)
    if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        names = ", ".join(
            p.name for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        raise ValueError(
            f"key={name!r} is not a named parameter of {display_name(obj)}{signature}; "
            f"expected one of: {names or '(none)'}"
        )
    positional = param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
    by_keyword = param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    index = list(signature.parameters).index(name) if positional else -1
    default = param.default
    where = display_name(obj)

    def from_parameter(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if by_keyword and name in kwargs:
            return kwargs[name]
        if positional:
            at = index - 1 if with_instance and instance is not None else index
            if 0 <= at < len(args):
                return args[at]
            if at < 0:  # the parameter is the bound instance itself
                return instance
        if default is not inspect.Parameter.empty:
            return default
        raise TypeError(f"{where}() missing required argument {name!r} (the rate-limit key)")

    return from_parameter
