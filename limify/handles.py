"""``fn.rate_limit``: the handle of a decorated callable, to peek at or reset its limit.

:class:`LimitHandle` for sync callables, :class:`AsyncLimitHandle` (the same
methods, awaitable) for async ones. A method's handle, read from an instance,
is bound to it, so the key comes from that instance's call as it would.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Generic, TypeVar, cast

from limify.core.function_limit import FunctionLimit
from limify.core.plan import Plan
from limify.core.result import LimitationResult

__all__ = ["LimitHandle", "AsyncLimitHandle", "handle_for"]

ResultT = TypeVar("ResultT")
NoneT = TypeVar("NoneT")


class _Handle(Generic[ResultT, NoneT]):
    """What both handles share; every method is written once (see :class:`LimitHandle`)."""

    __slots__ = ("_limit", "_instance")

    def __init__(self, limit: FunctionLimit, instance: Any = None) -> None:
        self._limit = limit
        self._instance = instance

    @property
    def plans(self) -> tuple[Plan, ...]:
        """The limits declared on the callable (before any plan provider)."""
        return self._limit.plans

    def keys(self, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """The storage keys a call with these arguments uses."""
        return self._limit.keys(self._instance, args, kwargs)

    def peek(self, *args: Any, **kwargs: Any) -> ResultT:
        """The decision a call with these arguments would get now, consuming nothing."""
        return cast(ResultT, self._limit.peek(self._instance, args, kwargs))

    def reset(self, *args: Any, **kwargs: Any) -> NoneT:
        """Forget the state of the key a call with these arguments uses.

        A limit shared by every key (:class:`~limify.GlobalLimit`) is left alone
        unless the callable has no ``key``.
        """
        return cast(NoneT, self._limit.reset(self._instance, args, kwargs))


class LimitHandle(_Handle[LimitationResult, None]):
    """``fn.rate_limit`` for a sync callable: inspect or clear the limit a call would use.

    Pass the arguments a call would receive; they pick the key (and plan) the same
    way the call would.
    """

    __slots__ = ()


class AsyncLimitHandle(_Handle[Awaitable[LimitationResult], Awaitable[None]]):
    """``fn.rate_limit`` for an async callable: ``await fn.rate_limit.peek(...)``."""

    __slots__ = ()


def handle_for(limit: FunctionLimit, instance: Any = None) -> LimitHandle | AsyncLimitHandle:
    """The handle of ``limit`` (bound to ``instance`` for a method read from one)."""
    return (AsyncLimitHandle if limit.is_async else LimitHandle)(limit, instance)
