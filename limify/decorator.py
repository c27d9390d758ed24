"""``@rate_limit``: any sync or async callable as a rate-limited endpoint.

Everything that can be settled is settled at decoration time: the rates are
parsed, plan and provider names are looked up, sync vs async is decided, the
key extractor is bound to the signature, the algorithm and the storage adapter
are picked (see :class:`~limify.core.function_limit.FunctionLimit`).

The decorated callable carries a handle, ``fn.rate_limit`` (:class:`LimitHandle`
or :class:`AsyncLimitHandle`), to peek at or reset the limit a call would use.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any, cast

import wrapt

from limify._callables import (
    display_name,
    is_async_callable,
    key_getter,
    reject_generators,
    takes_bound_instance,
)
from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.base import check_cost
from limify.core.function_limit import FunctionLimit
from limify.handles import AsyncLimitHandle, LimitHandle, handle_for
from limify.core.plans import Plan, ProviderLike, plans
from limify.core.rate import RateSpec, parse_rates
from limify.core.resilience import check_policy
from limify.core.storage import DEFAULTS, StorageLike, check_storage, default_storage
from limify.core.validation import check_reporting, check_wait_options
from limify.events import Decision
from limify.limited import RateLimitDecorator

__all__ = ["rate_limit", "configure", "get_default_storage", "LimitHandle", "AsyncLimitHandle"]


def configure(
    *,
    storage: StorageLike | None = None,
    on_storage_error: str | None = None,
    shadow: bool | None = None,
    enabled: bool | None = None,
) -> None:
    """Set process-wide defaults for limits declared without them.

    Limits already declared pick the new defaults up on their next call, so
    ``configure`` may run at application start-up, after modules were imported.

    Args:
        storage: a URL (``"memory://"``, ``"redis://host:6379/0"``) or an adapter.
        on_storage_error: ``"fail_open"``, ``"fail_closed"`` (the initial default) or
            ``"local"``: what limits answer while their storage is unreachable
            (see :mod:`limify.core.resilience`).
        shadow: ``True`` puts every limit declared without ``shadow=`` in shadow mode:
            refusals are computed, consume nothing, are reported (decision events
            with ``enforced=False``, ``on_breach``), and the calls go on.
        enabled: ``False`` is the kill switch: every limit (``@rate_limit``, web
            rules, outbound transports) admits every call without counting it, and
            web responses carry no rate-limit headers; ``True`` switches them back on.
    """
    if storage is None and on_storage_error is None and shadow is None and enabled is None:
        raise TypeError("configure() needs storage=..., on_storage_error=..., shadow=... and/or enabled=...")
    if storage is not None:
        check_storage(storage)
    if on_storage_error is not None:
        check_policy(on_storage_error)
    if shadow is not None and not isinstance(shadow, bool):
        raise TypeError(f"shadow must be True, False or None, got {shadow!r}")
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    with DEFAULTS.lock:  # limits read DEFAULTS without the lock: the version changes last
        if storage is not None:
            DEFAULTS.storage = storage
        if on_storage_error is not None:
            DEFAULTS.on_storage_error = on_storage_error
        if shadow is not None:
            DEFAULTS.shadow = shadow
        if enabled is not None:
            DEFAULTS.enabled = enabled
        DEFAULTS.version += 1


def get_default_storage() -> StorageLike:
    """The storage set by the last :func:`configure` (``"memory://"`` initially)."""
    return default_storage()[1]


class _BoundLimited(wrapt.BoundFunctionWrapper[..., Any]):
    @property
    def rate_limit(self) -> LimitHandle | AsyncLimitHandle:
        instance = self._self_instance
        if instance is None and self._self_binding == "classmethod":
            instance = self._self_owner
        return handle_for(self._self_parent._self_limit, instance)


class _Limited(wrapt.FunctionWrapper[..., Any]):
    """The wrapper ``@rate_limit`` returns: the callable plus its ``rate_limit`` handle."""

    __bound_function_wrapper__ = _BoundLimited

    def __init__(self, wrapped: Any, wrapper: Any, limit: FunctionLimit) -> None:
        super().__init__(wrapped, wrapper)
        self._self_limit = limit

    @property
    def rate_limit(self) -> LimitHandle | AsyncLimitHandle:
        return handle_for(self._self_limit)


def _is_plain_function(fn: Any) -> bool:
    """A function that is not defined in a class body: it never needs wrapt's binding.

    A plain closure is then the wrapper, with the function's name, docstring,
    signature (through ``__wrapped__``) and the ``rate_limit`` handle: a generic
    ``wrapt.FunctionWrapper`` costs about as much per call as a whole in-memory check.
    Methods keep wrapt, which binds ``fn.rate_limit`` to the instance.
    """
    if not inspect.isfunction(fn):
        return False
    scope = fn.__qualname__.split(".")
    return len(scope) == 1 or scope[-2] == "<locals>"


def _as_plain(guarded: Callable[..., Any], fn: Any, limit: FunctionLimit) -> Any:
    # The wrapper runs in the function's own globals: tools that resolve its string
    # annotations there (FastAPI before 0.112, under `from __future__ import
    # annotations`) find the function's names. Its code reads no global name itself.
    guarded = types.FunctionType(
        guarded.__code__, fn.__globals__, guarded.__name__, guarded.__defaults__, guarded.__closure__
    )
    functools.update_wrapper(guarded, fn)
    guarded.rate_limit = handle_for(limit)  # type: ignore[attr-defined]
    return guarded


def _wrap_sync(fn: Any, limit: FunctionLimit) -> Any:
    admit, give_back = limit.admit, limit.give_back

    def guarded(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        admitted = admit(instance, args, kwargs)
        if not limit.has_epilogue:
            return wrapped(*args, **kwargs)
        try:
            value = wrapped(*args, **kwargs)
        except BaseException as error:
            give_back(admitted, error)
            raise
        give_back(admitted, None)
        return value

    if not _is_plain_function(fn):
        return _Limited(fn, guarded, limit)
    if not limit.has_epilogue:

        def plain(*args: Any, **kwargs: Any) -> Any:
            if not limit.fast_check(args, kwargs):
                admit(None, args, kwargs)
            return fn(*args, **kwargs)

        return _as_plain(plain, fn, limit)
    if limit.leases:

        def plain_lease(*args: Any, **kwargs: Any) -> Any:
            held = limit.fast_lease(args, kwargs)
            if held is None:
                return guarded(fn, None, args, kwargs)
            try:
                return fn(*args, **kwargs)
            finally:
                held[0](held[1], held[2], True)

        return _as_plain(plain_lease, fn, limit)

    def plain_with_epilogue(*args: Any, **kwargs: Any) -> Any:
        return guarded(fn, None, args, kwargs)

    return _as_plain(plain_with_epilogue, fn, limit)


def _async_guard(limit: FunctionLimit) -> Callable[..., Any]:
    """The wrapt wrapper of an async callable: one frame between the caller and the engine."""
    admit, give_back, epilogue = limit.admit, limit.give_back, limit.has_epilogue

    async def guarded(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        admitted = await admit(instance, args, kwargs)
        if not epilogue:
            return await wrapped(*args, **kwargs)
        try:
            value = await wrapped(*args, **kwargs)
        except BaseException as error:
            if (giving_back := give_back(admitted, error)) is not None:
                await giving_back
            raise
        if (giving_back := give_back(admitted, None)) is not None:
            await giving_back
        return value

    return guarded


def _is_function_like(fn: Any) -> bool:
    # Functions and the descriptors wrapt binds; these keep looking like
    # coroutine functions to `inspect` when wrapped by wrapt.
    return inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, (classmethod, staticmethod))


def _wrap_async(fn: Any, limit: FunctionLimit) -> Any:
    guarded = _async_guard(limit)
    if _is_plain_function(fn) and not limit.has_epilogue:
        admit = limit.admit

        async def plain(*args: Any, **kwargs: Any) -> Any:
            if not limit.fast_check(args, kwargs):
                await admit(None, args, kwargs)
            return await fn(*args, **kwargs)

        return _as_plain(plain, fn, limit)
    if _is_plain_function(fn) and limit.leases:

        async def plain_lease(*args: Any, **kwargs: Any) -> Any:
            held = limit.fast_lease(args, kwargs)
            if held is None:
                return await guarded(fn, None, args, kwargs)
            try:
                return await fn(*args, **kwargs)
            finally:  # in memory a release never awaits: a cancelled call gives its slot back too
                held[0](held[1], held[2], True)

        return _as_plain(plain_lease, fn, limit)
    if _is_function_like(fn):
        return _Limited(fn, guarded, limit)

    # An object with an async __call__ (or a partial of a coroutine function): a
    # wrapt proxy of it would not look like a coroutine function to inspect, so
    # wrap it in a real `async def` instead.
    async def guarded_call(*args: Any, **kwargs: Any) -> Any:
        return await guarded(fn, None, args, kwargs)

    functools.update_wrapper(guarded_call, fn, assigned=("__module__", "__doc__"), updated=())
    guarded_call.__name__ = getattr(fn, "__name__", type(fn).__name__)
    guarded_call.__qualname__ = getattr(fn, "__qualname__", type(fn).__qualname__)
    guarded_call.__wrapped__ = fn  # type: ignore[attr-defined]
    guarded_call.rate_limit = handle_for(limit)  # type: ignore[attr-defined]
    return guarded_call


def _limits_from(rate: Any, plan: Any) -> list[tuple[Plan, bool]]:
    if rate is not None and callable(rate) and not isinstance(rate, Plan):
        raise TypeError(
            f"rate_limit() takes the rate first: write @rate_limit('10/minute'), "
            f"not @rate_limit on {display_name(rate)}"
        )
    if plan is not None:
        if rate is not None:
            raise ValueError("give rate_limit() a rate or a plan, not both")
        return [
            (plans.plan_for(plan) if isinstance(plan, str) and "/" not in plan else _plan_object(plan), False)
        ]
    if rate is None:
        raise ValueError("rate_limit() needs a rate such as '10/minute' (or plan='name'); got None")
    return parse_rates(rate)


def _plan_object(plan: Any) -> Plan:
    if isinstance(plan, Plan):
        return plan
    raise TypeError(f"plan must be a registered plan name or a Plan, got {plan!r}")


def _check_options(
    limits: list[tuple[Plan, bool]], cost: Any, on_exceeded: Any, max_wait: Any, name: Any, refund_on: Any
) -> tuple[type[BaseException], ...]:
    if not callable(cost):
        check_cost(cost, [plan for plan, _ in limits], "cost (an int or a callable)")
    check_wait_options(on_exceeded, max_wait)
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty str or None, got {name!r}")
    errors = refund_on if isinstance(refund_on, tuple) else (refund_on,) if refund_on is not None else ()
    if not all(isinstance(error, type) and issubclass(error, BaseException) for error in errors):
        raise TypeError(f"refund_on must be an exception class or a tuple of them, got {refund_on!r}")
    return errors


def rate_limit(
    rate: RateSpec | None = None,
    *,
    key: str | Callable[..., Any] | None = None,
    storage: StorageLike | None = None,
    algorithm: str = "token_bucket",
    cost: int | Callable[..., int] = 1,
    on_exceeded: str = "raise",
    max_wait: float | None = None,
    name: str | None = None,
    plan: str | Plan | None = None,
    plan_provider: str | ProviderLike | None = None,
    refund_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    on_storage_error: str | None = None,
    shadow: bool | None = None,
    on_breach: Callable[[Decision], object] | None = None,
    cache_refusals: bool = True,
) -> RateLimitDecorator:
    """Rate-limit a sync or async callable.

    Args:
        rate: ``"<limit>/<unit>"`` (e.g. ``"10/minute"``), several joined by ``;``
            (``"10/second;1000/day"``: every one must admit), a :class:`~limify.Plan`,
            a :class:`~limify.GlobalLimit` (one bucket shared by every key), or a
            list of those.
        key: ``None`` for one bucket shared by every call; the name of a parameter
            (its argument picks the bucket, whether passed by position, by keyword
            or left to its default); or a callable receiving the same arguments as
            the function (``self``/``cls`` first for methods) and returning the key.
        storage: ``None`` for the process default (see :func:`configure`), a URL
            (``"memory://"``, ``"redis://host:6379/0"``) or an adapter instance.
        algorithm: the algorithm's name (see ``limify.core.algorithms.ALGORITHMS``).
        cost: how much one call spends: an int, or a callable of the call's arguments.
        on_exceeded: ``"raise"`` raises :class:`~limify.RateLimitExceeded`; ``"wait"``
            sleeps (``time.sleep`` or ``anyio.sleep``) until the call is admitted.
        max_wait: with ``"wait"``, the longest total wait in seconds before raising
            :class:`~limify.RateLimitExceeded` instead (``None``: no bound).
        name: the limit's name in storage keys (default: the callable's
            ``module.qualname``). Two callables with one name share their buckets.
        plan: a plan registered in :data:`limify.plans` (by name) or a Plan, instead of ``rate``.
        plan_provider: a provider name registered in :data:`limify.plans`, or a
            provider (``resolve(context, rule)`` object or ``(context) -> Plan | str |
            None`` callable) asked at each call; ``None`` from it means the inline
            rate (or ``plan``). Its context is a :class:`~limify.core.function_limit.CallContext`.
        refund_on: exception class(es); when the call raises one, its cost is given back.
        on_storage_error: ``"fail_open"``, ``"fail_closed"`` or ``"local"``: what to
            answer while the storage is unreachable (``None``: the process default,
            see :func:`configure`).
        shadow: ``True``: decide exactly as if enforced (admitted calls consume,
            refusals are reported with ``enforced=False``), but let every call
            through; ``None``: the process default (:func:`configure`).
        on_breach: ``(event) -> None``, called once per refused call with its
            :class:`limify.events.Decision` (for paging, audit logs, deny lists);
            an exception it raises is logged, never propagated.
        cache_refusals: refuse the calls of a key whose refusal is known to hold
            (until its ``retry_after``) from a cache in process, without a round trip
            (or, in memory, the lock and the transition); a refund or reset made by
            another process is then seen only when it ends (see
            :mod:`limify.core.refusals`). Never applies to leases.

    Every invalid argument, unknown plan or provider name raises ``ValueError`` or
    ``TypeError`` here, at decoration time, never at call time.

    Type checkers see the decorated callable with its own parameters and return type,
    and its handle as ``fn.rate_limit`` (see :mod:`limify.limited`).
    """
    limits = _limits_from(rate, plan)
    algorithm_classes(algorithm)[0].spec.check_plans([plan for plan, _ in limits])
    refund_errors = _check_options(limits, cost, on_exceeded, max_wait, name, refund_on)
    provider = None if plan_provider is None else plans.resolver(plan_provider)
    if on_storage_error is not None:
        check_policy(on_storage_error)
    check_reporting(shadow, on_breach)
    if not isinstance(cache_refusals, bool):
        raise TypeError(f"cache_refusals must be True or False, got {cache_refusals!r}")
    if storage is not None:
        check_storage(storage)
    if key is not None and not (isinstance(key, str) or callable(key)):
        raise TypeError(f"key must be None, a parameter name or a callable, got {key!r}")

    def decorate(fn: Any) -> Any:
        if not callable(fn) and not isinstance(fn, (classmethod, staticmethod)):
            raise TypeError(f"@rate_limit decorates callables, got {fn!r}")
        reject_generators(fn)
        is_async = is_async_callable(fn)
        target = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn
        limit = FunctionLimit(
            function=fn,
            limits=limits,
            algorithm=algorithm,
            storage=storage,
            is_async=is_async,
            get_key=key_getter(fn, key),
            with_instance=takes_bound_instance(fn),
            cost=cost,
            wait=on_exceeded == "wait",
            max_wait=max_wait,
            scope=name or f"{getattr(target, '__module__', None) or '?'}.{display_name(fn)}",
            provider=provider,
            refund_on=refund_errors,
            on_storage_error=on_storage_error,
            shadow=shadow,
            on_breach=on_breach,
            cache_refusals=cache_refusals,
        )
        return _wrap_async(fn, limit) if is_async else _wrap_sync(fn, limit)

    return cast(RateLimitDecorator, decorate)
