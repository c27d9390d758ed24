"""``@rate_limit``: any sync or async callable as a rate-limited endpoint.

Everything that can be settled is settled at decoration time: the rate is
parsed, sync vs async is decided, the key extractor is bound to the signature,
the algorithm and the storage adapter are picked. A call only extracts its key,
runs one check and, when refused, raises or waits.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

import anyio
import wrapt

from limify._callables import (
    call_arguments,
    display_name,
    is_async_callable,
    key_getter,
    reject_generators,
    takes_bound_instance,
)
from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.base import AsyncAlgorithm, SyncAlgorithm
from limify.core.keys import PREFIX, encode_part
from limify.core.plans import Plan
from limify.core.rate import parse_rate
from limify.core.result import LimitationResult
from limify.core.storage import StorageLike, adapter_for, check_storage
from limify.errors import RateLimitExceeded

__all__ = ["rate_limit", "configure", "get_default_storage"]

F = TypeVar("F", bound=Callable[..., Any])

_ON_EXCEEDED = ("raise", "wait")


class _Defaults:
    """The process-wide default storage; ``version`` moves at each :func:`configure`."""

    def __init__(self) -> None:
        self.storage: StorageLike = "memory://"
        self.version = 0
        self.lock = threading.Lock()


_defaults = _Defaults()


def configure(*, storage: StorageLike) -> None:
    """Set the process-wide default storage used by limits declared without ``storage=``.

    Limits already declared pick the new default up on their next call, so
    ``configure`` may run at application start-up, after modules were imported.

    Args:
        storage: a URL (``"memory://"``, ``"redis://host:6379/0"``) or an adapter.
    """
    check_storage(storage)
    with _defaults.lock:
        _defaults.storage = storage
        _defaults.version += 1


def get_default_storage() -> StorageLike:
    """The storage set by the last :func:`configure` (``"memory://"`` initially)."""
    return _defaults.storage


def _plan_from(rate: Any) -> Plan:
    if isinstance(rate, Plan):
        return rate
    if rate is None:
        raise ValueError("rate_limit() needs a rate such as '10/minute' (or a Plan); got None")
    if callable(rate):
        raise TypeError(
            f"rate_limit() takes the rate first: write @rate_limit('10/minute'), "
            f"not @rate_limit on {display_name(rate)}"
        )
    return parse_rate(rate)


def _check_options(plan: Plan, cost: Any, on_exceeded: Any, max_wait: Any, name: Any) -> None:
    if callable(cost):
        pass
    elif isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int >= 1 or a callable, got {cost!r}")
    elif not 1 <= cost <= plan.limit:
        raise ValueError(
            f"cost must be between 1 and the plan's limit ({plan.limit}), got {cost!r}: "
            "a larger cost could never be admitted"
        )
    if on_exceeded not in _ON_EXCEEDED:
        raise ValueError(f"on_exceeded must be 'raise' or 'wait', got {on_exceeded!r}")
    if max_wait is not None:
        if on_exceeded != "wait":
            raise ValueError("max_wait only applies with on_exceeded='wait'")
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
            raise TypeError(f"max_wait must be a number of seconds or None, got {max_wait!r}")
        if not (max_wait >= 0 and math.isfinite(max_wait)):
            raise ValueError(f"max_wait must be a finite number of seconds >= 0, got {max_wait!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty str or None, got {name!r}")


class _Limit:
    """One decorated callable's limit: key building, the check, raise-or-wait."""

    def __init__(
        self,
        *,
        plan: Plan,
        algorithm: str,
        storage: StorageLike | None,
        is_async: bool,
        get_key: Callable[[Any, tuple[Any, ...], dict[str, Any]], Any] | None,
        with_instance: bool,
        cost: Any,
        on_exceeded: str,
        max_wait: float | None,
        scope: str,
    ) -> None:
        self.plan = plan
        self.is_async = is_async
        self.get_key = get_key
        self.with_instance = with_instance
        self.cost = cost
        self.wait = on_exceeded == "wait"
        self.max_wait = max_wait
        self.prefix = f"{PREFIX}:{encode_part(scope)}:{encode_part(plan.id)}"
        sync_class, async_class = algorithm_classes(algorithm)
        self._algorithm_class: type[Any] = async_class if is_async else sync_class
        self._storage = storage
        self._follows_default = storage is None
        self._version = -1
        self._algorithm: Any = None
        if storage is not None:
            self._algorithm = self._algorithm_class(adapter_for(storage, is_async=is_async))

    def algorithm(self) -> Any:
        """The algorithm shell bound to the current storage."""
        if self._follows_default and self._version != _defaults.version:
            version, storage = _defaults.version, _defaults.storage
            self._algorithm = self._algorithm_class(adapter_for(storage, is_async=self.is_async))
            self._version = version
        return self._algorithm

    def key(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self.get_key is None:
            return self.prefix
        return f"{self.prefix}:{encode_part(self.get_key(instance, args, kwargs))}"

    def cost_of(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        cost = self.cost
        if not callable(cost):
            return int(cost)
        value = cost(*call_arguments(self.with_instance, instance, args), **kwargs)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.plan.limit:
            raise ValueError(
                f"the cost callable returned {value!r}; expected an int between 1 and "
                f"the plan's limit ({self.plan.limit})"
            )
        return value

    def _refuse_or_sleep(self, result: LimitationResult, key: str, waited: float) -> float:
        """Raise, or return how long to sleep before trying again."""
        if not self.wait:
            raise RateLimitExceeded(result, key)
        if self.max_wait is not None and waited + result.retry_after > self.max_wait:
            raise RateLimitExceeded(result, key)
        return result.retry_after

    def enter(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LimitationResult:
        """Admit one sync call (consuming its cost), wait for it, or raise."""
        key = self.key(instance, args, kwargs)
        cost = self.cost_of(instance, args, kwargs)
        algorithm: SyncAlgorithm = self.algorithm()
        waited = 0.0
        while True:
            result = algorithm.check(key, self.plan, cost)
            if result.allowed:
                return result
            pause = self._refuse_or_sleep(result, key, waited)
            time.sleep(pause)
            waited += pause

    async def enter_async(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> LimitationResult:
        """Admit one async call (consuming its cost), wait for it, or raise."""
        key = self.key(instance, args, kwargs)
        cost = self.cost_of(instance, args, kwargs)
        algorithm: AsyncAlgorithm = self.algorithm()
        waited = 0.0
        while True:
            result = await algorithm.check(key, self.plan, cost)
            if result.allowed:
                return result
            pause = self._refuse_or_sleep(result, key, waited)
            await anyio.sleep(pause)
            waited += pause


def _wrap_sync(fn: Any, limit: _Limit) -> Any:
    @wrapt.decorator
    def guarded(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        limit.enter(instance, args, kwargs)
        return wrapped(*args, **kwargs)

    return guarded(fn)


def _is_function_like(fn: Any) -> bool:
    # Functions and the descriptors wrapt binds; these keep looking like
    # coroutine functions to `inspect` when wrapped by wrapt.
    return inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, (classmethod, staticmethod))


def _wrap_async(fn: Any, limit: _Limit) -> Any:
    if _is_function_like(fn):

        @wrapt.decorator
        async def guarded(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            await limit.enter_async(instance, args, kwargs)
            return await wrapped(*args, **kwargs)

        return guarded(fn)

    # An object with an async __call__ (or a partial of a coroutine function): a
    # wrapt proxy of it would not look like a coroutine function to inspect, so
    # wrap it in a real `async def` instead.
    async def guarded_call(*args: Any, **kwargs: Any) -> Any:
        await limit.enter_async(None, args, kwargs)
        return await fn(*args, **kwargs)

    functools.update_wrapper(guarded_call, fn, assigned=("__module__", "__doc__"), updated=())
    guarded_call.__name__ = getattr(fn, "__name__", type(fn).__name__)
    guarded_call.__qualname__ = getattr(fn, "__qualname__", type(fn).__qualname__)
    guarded_call.__wrapped__ = fn  # type: ignore[attr-defined]
    return guarded_call


@overload
def rate_limit(
    rate: str | Plan | None = None,
    *,
    key: str | Callable[..., Any] | None = None,
    storage: StorageLike | None = None,
    algorithm: str = "token_bucket",
    cost: int | Callable[..., int] = 1,
    on_exceeded: str = "raise",
    max_wait: float | None = None,
    name: str | None = None,
) -> Callable[[F], F]: ...


@overload
def rate_limit(rate: F) -> F: ...


def rate_limit(
    rate: Any = None,
    *,
    key: str | Callable[..., Any] | None = None,
    storage: StorageLike | None = None,
    algorithm: str = "token_bucket",
    cost: int | Callable[..., int] = 1,
    on_exceeded: str = "raise",
    max_wait: float | None = None,
    name: str | None = None,
) -> Any:
    """Rate-limit a sync or async callable.

    Args:
        rate: ``"<limit>/<unit>"`` (e.g. ``"10/minute"``) or a :class:`~limify.Plan`.
        key: ``None`` for one bucket shared by every call; the name of a parameter
            (its argument picks the bucket, whether passed by position, by keyword
            or left to its default); or a callable receiving the same arguments as
            the function (``self``/``cls`` first for methods) and returning the key.
        storage: ``None`` for the process default (see :func:`configure`), a URL
            (``"memory://"``, ``"redis://host:6379/0"``) or an adapter instance.
        algorithm: the algorithm's name (``"token_bucket"``).
        cost: how much one call spends: an int, or a callable of the call's arguments.
        on_exceeded: ``"raise"`` raises :class:`~limify.RateLimitExceeded`; ``"wait"``
            sleeps (``time.sleep`` or ``anyio.sleep``) until the call is admitted.
        max_wait: with ``"wait"``, the longest total wait in seconds before raising
            :class:`~limify.RateLimitExceeded` instead (``None``: no bound).
        name: the limit's name in storage keys (default: the callable's
            ``module.qualname``). Two callables with one name share their buckets.

    Every invalid argument raises ``ValueError`` or ``TypeError`` here, at
    decoration time, never at call time.
    """
    plan = _plan_from(rate)
    algorithm_classes(algorithm)
    _check_options(plan, cost, on_exceeded, max_wait, name)
    if storage is not None:
        check_storage(storage)
    if key is not None and not (isinstance(key, str) or callable(key)):
        raise TypeError(f"key must be None, a parameter name or a callable, got {key!r}")

    def decorate(fn: F) -> F:
        if not callable(fn) and not isinstance(fn, (classmethod, staticmethod)):
            raise TypeError(f"@rate_limit decorates callables, got {fn!r}")
        reject_generators(fn)
        is_async = is_async_callable(fn)
        target = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn
        scope = name or f"{getattr(target, '__module__', None) or '?'}.{display_name(fn)}"
        limit = _Limit(
            plan=plan,
            algorithm=algorithm,
            storage=storage,
            is_async=is_async,
            get_key=key_getter(fn, key),
            with_instance=takes_bound_instance(fn),
            cost=cost,
            on_exceeded=on_exceeded,
            max_wait=max_wait,
            scope=scope,
        )
        wrapper = _wrap_async(fn, limit) if is_async else _wrap_sync(fn, limit)
        return wrapper  # type: ignore[no-any-return]

    return decorate
