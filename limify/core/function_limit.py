"""One decorated callable's limit: its preparation, from a call's arguments to a Check.

:class:`FunctionLimit` is built once, at decoration time, with everything that
can be settled then: the plans, the key layout, the algorithm, the engine (store,
failure policy, raise or wait). Each call only extracts its key, resolves its
plan when a provider is set, and hands one :class:`~limify.core.check.Check` to
the engine, which admits it, waits or raises. Keyless limits and single keyed
limits with a fixed cost build their Check from parts settled here.

In a web request (an adapter opened a
:class:`~limify.core.request_scope.RequestScope`), the endpoint's own limit adds
its decision to the request's, so the response carries its headers; while the
limits are switched off (``configure(enabled=False)``, or the app's ``ENABLED``
setting for its endpoints) a call is admitted uncounted and gives nothing back.

Everything here is written once for sync and async callables: the engine's
``runner`` is ``run`` or ``run_async``, so :meth:`FunctionLimit.admit`,
:meth:`~FunctionLimit.give_back`, :meth:`~FunctionLimit.peek` and
:meth:`~FunctionLimit.reset` return values for sync callables and awaitables for
async ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limify._callables import KeyGetter, call_arguments
from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.base import (
    PEEK,
    REFUND,
    Outcome,
    check_cost,
    new_token,
    refund_token,
    to_result,
)
from limify.core.check import CLEAR, CONSUME, Check
from limify.core.engine import DEFAULT_POLICY, RAISE, WAIT, Engine, as_result, log_give_back_failure, ready
from limify.core import fast_paths
from limify.core.fast_paths import FastCheck, FastLease, Held
from limify.core.keys import encode_part, limit_keys
from limify.core.plan import Plan
from limify.core.plans import ResolvePlan
from limify.core.request_scope import RequestScope, current
from limify.core.storage import DEFAULTS, StorageLike
from limify.errors import RateLimitExceeded

#: What :meth:`FunctionLimit.admit` answers a call it let through uncounted (limits
#: switched off): nothing to give back for it.
UNCOUNTED = Check(None, (), (), 0)  # type: ignore[arg-type]

__all__ = ["CallContext", "FunctionLimit"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a plan provider sees for a call of a decorated function.

    Attributes:
        function: the decorated callable.
        args: positional arguments as the function receives them (``self`` first for methods).
        kwargs: keyword arguments.
        identity: the call's key value (``None`` when the limit has no ``key``).
    """

    function: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    identity: Any


class FunctionLimit:
    """The limit of one decorated callable (see the module docs)."""

    def __init__(
        self,
        *,
        function: Any,
        limits: list[tuple[Plan, bool]],
        algorithm: str,
        storage: StorageLike | None,
        is_async: bool,
        get_key: KeyGetter | None,
        with_instance: bool,
        cost: int | Callable[..., int],
        wait: bool,
        max_wait: float | None,
        scope: str,
        provider: ResolvePlan | None,
        refund_on: tuple[type[BaseException], ...],
        on_storage_error: str | None = None,
        shadow: bool | None = None,
        on_breach: Callable[[Any], object] | None = None,
        cache_refusals: bool = True,
    ) -> None:
        self.function = function
        self.is_async = is_async
        self.get_key = get_key
        self.with_instance = with_instance
        self.cost = cost
        self.provider = provider
        self.refund_on = refund_on
        self.scope = encode_part(scope)
        self.plans = tuple(plan for plan, _ in limits)
        self.shared = tuple(shared for _, shared in limits)
        self.shared_plans = tuple(plan for plan, shared in limits if shared)
        self._plan_ids = [encode_part(plan.id) for plan in self.plans]
        self._periods = [plan.period_us for plan in self.plans]
        self.spec = algorithm_classes(algorithm)[0].spec
        #: Concurrency slots are leases: every admitted call releases its own.
        self.leases = self.spec.lease
        #: Whether anything must run after the call (release or refund).
        self.has_epilogue = self.leases or bool(refund_on)
        self.engine = Engine(
            storage,
            is_async=is_async,
            policy=DEFAULT_POLICY if on_storage_error is None else on_storage_error,
            refusal=WAIT if wait else RAISE,
            max_wait=max_wait,
            name=scope,
            source="decorator",
            shadow=shadow,
            on_breach=on_breach,
            cache_refusals=cache_refusals,
        )
        if any(self.shared):  # a store may refuse to share a state beside per-key ones
            self.engine.check_layout(self.shared)
        self._run = self.engine.runner
        #: What the engine answers an admission with (see :meth:`_admitted`).
        self._finish_admission = self._admitted if refund_on and not self.leases else _same_check
        #: The whole check of a call, settled now when nothing in it depends on the call.
        self._constant_check: Check | None = None
        self._keyed_prefix: str | None = None
        # Each call carries its own token when it has a give-back: a lease's name, or
        # the name a refund finds its call by (see limify.core.algorithms.base.refund_token).
        if provider is None and not callable(cost) and not self.has_epilogue:
            if get_key is None:
                keys = limit_keys(self.scope, self._plan_ids, self._periods, self.shared, None)
                self._constant_check = Check(self.spec, keys, self.plans, cost)
            elif self._single_limit():
                # limit_keys' single-limit layout, with the identity appended per call.
                self._keyed_prefix = limit_keys(self.scope, self._plan_ids, self._periods, self.shared, "")[0]
        #: A lease limit's one storage key when nothing in it depends on the call but the
        #: identity: the keyed prefix (the encoded identity appended per call) or the key.
        self._lease_key: str | None = None
        if self.leases and provider is None and not callable(cost) and self._single_limit():
            identity = None if get_key is None else ""
            self._lease_key = limit_keys(self.scope, self._plan_ids, self._periods, self.shared, identity)[0]
        #: ``fast_check(args, kwargs)``: :meth:`fast_admit` as one closure of the current
        #: defaults (see :func:`limify.core.fast_paths.admission`); the wrappers call it
        #: directly. It rebuilds itself when :func:`limify.configure` changes the defaults.
        self.fast_check: FastCheck = self.fast_admit
        #: ``fast_lease(args, kwargs)``: :meth:`fast_acquire` as one closure, rebuilt as ``fast_check`` is.
        self.fast_lease: FastLease = self.fast_acquire
        self._raises = not wait

    def _single_limit(self) -> bool:
        return len(self.plans) == 1 and not self.shared[0]

    def fast_admit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Admit a plain call on the store's hot path; ``False``: take :meth:`admit` instead.

        For limits of one plan, one key and a fixed cost on an in-memory store
        (which never fails, so no failure policy applies): the key goes straight to
        :meth:`limify.InMemoryAdapter.runner`, with no Check, engine or outcome in
        between. A refusal raises here too when the limit raises; a limit that waits
        (or any other store) answers ``False``, and the engine does the rest. A
        refusal known to hold is answered from the refusal cache: on a remote store,
        the only thing answered here (see :mod:`limify.core.refusals`). Decisions
        someone listens to, and calls in a web request (whose decision joins the
        request's), go through the engine.
        """
        self.fast_check = fast = fast_paths.admission(self)
        return fast(args, kwargs)

    def fast_acquire(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Held | None:
        """Take a lease limit's slot on the store's hot path; ``None``: take :meth:`admit` instead.

        :meth:`fast_admit`'s twin for ``concurrency`` limits of one plan and a fixed
        cost on an in-memory store: the lease is named by an in-process token (the
        store is this process's alone) and taken by the store's runner directly.
        The answer ``(run, key, token)`` is released with ``run(key, token, True)``
        when the call returns; a refusal raises here (a limit that waits, decisions
        someone listens to and calls in a web request go through the engine).
        """
        self.fast_lease = fast = fast_paths.lease(self)
        return fast(args, kwargs)

    def prepare(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Check:
        """The Check of one call: keys, plans, cost (and, with a give-back, a fresh token)."""
        if self._constant_check is not None:
            return self._constant_check
        if self._keyed_prefix is not None:  # one per-key limit, fixed cost: the usual keyed case
            encoded = encode_part(self.get_key(instance, args, kwargs))  # type: ignore[misc]
            return Check(self.spec, (self._keyed_prefix + encoded,), self.plans, self.cost)  # type: ignore[arg-type]
        return self._prepare(instance, args, kwargs)[0]

    def _prepare(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Check, tuple[bool, ...]]:
        """The Check of one call, and which of its limits are shared by every key."""
        call_args = call_arguments(self.with_instance, instance, args)
        identity = None if self.get_key is None else self.get_key(instance, args, kwargs)
        plans, shared, plan_ids, periods = self.plans, self.shared, self._plan_ids, self._periods
        if self.provider is not None:
            chosen = self.provider(CallContext(self.function, call_args, kwargs, identity), None)
            if chosen is not None:
                # The provider's plan replaces the per-key limits; shared ones stay.
                plans, shared = (chosen, *self.shared_plans), (False,) + (True,) * len(self.shared_plans)
                plan_ids = [encode_part(plan.id) for plan in plans]
                periods = [plan.period_us for plan in plans]
                self.spec.check_plans(plans)
                if not callable(self.cost):  # a plan below the cost could never admit: say so, never wait
                    check_cost(self.cost, plans)
        keys = limit_keys(
            self.scope, plan_ids, periods, shared, None if self.get_key is None else encode_part(identity)
        )
        cost = self.cost
        if callable(cost):
            cost = cost(*call_args, **kwargs)
            check_cost(cost, plans, "the cost callable's result")
        token = new_token() if self.has_epilogue else ""
        return Check(self.spec, keys, plans, cost, CONSUME, token), shared

    def _admitted(self, check: Check, outcome: Outcome) -> Check:
        """A refundable call's Check as its refund must name it: by its token and when it was admitted."""
        return check._replace(token=refund_token(outcome.now_us, check.token))

    def admit(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Admit one call (consuming its cost), wait for it or raise; the admitted Check.

        For an async callable, an awaitable of it; :data:`UNCOUNTED` for a call let
        through while the limits are switched off.
        """
        scope = current()
        if scope is None:
            if not DEFAULTS.enabled:
                return ready(self.is_async, UNCOUNTED)
            return self._run(self.prepare(instance, args, kwargs), self._finish_admission)
        if not DEFAULTS.enabled or (not scope.enabled and scope.is_endpoint(self)):
            return ready(self.is_async, UNCOUNTED)
        return self._admit_in(scope, self.prepare(instance, args, kwargs))

    def _admit_in(self, scope: RequestScope, check: Check) -> Any:
        """:meth:`admit` in a web request: the endpoint's decision, admitted or refused, joins the request's."""
        finish_admission = self._finish_admission

        def recorded(check: Check, outcome: Outcome) -> Check:
            scope.endpoint_call(self, to_result(outcome, check.plans), check.plans, check.keys[0])
            return finish_admission(check, outcome)

        def refused(error: RateLimitExceeded) -> None:
            scope.endpoint_call(self, error.result, check.plans, error.key)

        if self.is_async:

            async def admitted() -> Check:
                try:
                    return await self._run(check, recorded)  # type: ignore[no-any-return]
                except RateLimitExceeded as error:
                    refused(error)
                    raise

            return admitted()
        try:
            return self._run(check, recorded)
        except RateLimitExceeded as error:
            refused(error)
            raise

    def give_back(self, admitted: Check, error: BaseException | None) -> Any:
        """After a call: release its slot, or refund it when it raised a ``refund_on`` error.

        ``None`` when there is nothing to give back; else what the engine returns
        (an awaitable for async callables, to await). A failure to give back is
        logged, never raised: the lease or cost ages out, the call's outcome wins.
        """
        if admitted is UNCOUNTED:
            return None
        if self.leases or (error is not None and isinstance(error, self.refund_on)):
            return self._run(admitted._replace(mode=REFUND), on_error=log_give_back_failure)
        return None

    # Handle operations: peek at or reset the limit a call with these arguments would use.

    def keys(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The storage keys a call with these arguments uses."""
        return self.prepare(instance, args, kwargs).keys

    def peek(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The decision a call with these arguments would get, consuming nothing (awaitable if async)."""
        return self._run(self.prepare(instance, args, kwargs)._replace(mode=PEEK), as_result)

    def reset(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Clear the state a call with these arguments uses (awaitable if async).

        The caller's own keys: a limit shared by every key is kept unless the
        callable has no ``key``.
        """
        check, shared = self._prepare(instance, args, kwargs)
        if self.get_key is not None:
            check = check._replace(keys=tuple(key for key, common in zip(check.keys, shared) if not common))
        return self._run(check._replace(mode=CLEAR))


def _same_check(check: Check, outcome: Outcome) -> Check:
    return check
