"""The types of what ``@rate_limit`` returns: the callable's own signature, plus ``.rate_limit``.

``rate_limit(...)`` returns a :class:`RateLimitDecorator`; applied to a function it
gives a :class:`RateLimited` (sync) or an :class:`AsyncRateLimited` (``async def``),
which type checkers see with the function's parameters (through ``ParamSpec``) and
return type, and whose ``rate_limit`` attribute is a
:class:`~limify.decorator.LimitHandle` or :class:`~limify.decorator.AsyncLimitHandle`::

    @rate_limit("10/minute", key="user_id")
    def profile(user_id: int) -> dict[str, int]: ...

    profile(7)                      # checked against (user_id: int)
    profile.rate_limit.peek(7)      # LimitationResult

A method's decorated function, read from an instance, is a :class:`BoundRateLimited`:
its return type and handle are kept, its parameters are not checked (a type
checker cannot drop ``self`` from a ``ParamSpec``). Class and static methods keep
their own types.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

if TYPE_CHECKING:
    # Annotations only (postponed): typing_extensions is not a dependency of Limify.
    from typing_extensions import Self

    from limify.decorator import AsyncLimitHandle, LimitHandle

__all__ = ["RateLimited", "AsyncRateLimited", "BoundRateLimited", "RateLimitDecorator"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")
HandleT = TypeVar("HandleT", covariant=True)


class BoundRateLimited(Protocol[R_co, HandleT]):
    """A decorated method read from an instance (or a classmethod's class): loosely typed arguments."""

    @property
    def rate_limit(self) -> HandleT:
        """The handle, bound to the instance."""
        ...

    def __call__(self, *args: Any, **kwargs: Any) -> R_co: ...


class RateLimited(Protocol[P, R_co]):
    """A sync callable under ``@rate_limit``: its own signature, and ``.rate_limit``."""

    @property
    def rate_limit(self) -> LimitHandle:
        """Peek at, reset or list the keys of the limit a call would use."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None
    ) -> BoundRateLimited[R_co, LimitHandle]: ...


class AsyncRateLimited(Protocol[P, R_co]):
    """An ``async def`` under ``@rate_limit``: its own signature, and ``.rate_limit`` (awaitable methods)."""

    @property
    def rate_limit(self) -> AsyncLimitHandle:
        """``await fn.rate_limit.peek(...)``, ``await fn.rate_limit.reset(...)``."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None
    ) -> BoundRateLimited[Coroutine[Any, Any, R_co], AsyncLimitHandle]: ...


class RateLimitDecorator(Protocol):
    """What ``rate_limit(...)`` returns: apply it to a callable."""

    @overload
    def __call__(self, fn: classmethod[T, P, R]) -> classmethod[T, P, R]: ...
    @overload
    def __call__(self, fn: staticmethod[P, R]) -> staticmethod[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> AsyncRateLimited[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, R]) -> RateLimited[P, R]: ...
