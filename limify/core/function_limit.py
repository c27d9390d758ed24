"""One decorated callable's limit: from a call's arguments to an admitted call.

:class:`FunctionLimit` is built once, at decoration time, with everything that
can be settled then; each call only extracts its key, resolves its plan when a
provider is set, runs one atomic check and raises or waits when refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import anyio

from limify._callables import KeyGetter, call_arguments
from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.base import CONSUME, PEEK, REFUND, check_cost, new_token, refund_token, to_result
from limify.core.keys import encode_part, limit_keys
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.plans import Plan, ResolvePlan
from limify.core.result import LimitationResult
from limify.core.storage import DEFAULTS, StorageLike, adapter_for, default_storage
from limify.errors import LimifyError, RateLimitExceeded

__all__ = ["CallContext", "FunctionLimit", "Admission"]

log = logging.getLogger("limify")

#: A waiting lease acquire (``concurrency``) first tries again after FIRST_POLL
#: seconds, then twice as long each time, up to LONGEST_POLL.
FIRST_POLL = 0.01
LONGEST_POLL = 0.25


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


class Admission(NamedTuple):
    """What one call checks: its keys, plans, cost and token (kept to give the cost back)."""

    keys: tuple[str, ...]
    plans: tuple[Plan, ...]
    shared: tuple[bool, ...]
    cost: int
    token: str


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
    ) -> None:
        self.function = function
        self.is_async = is_async
        self.get_key = get_key
        self.with_instance = with_instance
        self.cost = cost
        self.wait = wait
        self.max_wait = max_wait
        self.provider = provider
        self.refund_on = refund_on
        self.scope = encode_part(scope)
        self.plans = tuple(plan for plan, _ in limits)
        self.shared = tuple(shared for _, shared in limits)
        self.shared_plans = tuple(plan for plan, shared in limits if shared)
        self._plan_ids = [encode_part(plan.id) for plan in self.plans]
        self._periods = [plan.period_us for plan in self.plans]
        sync_class, async_class = algorithm_classes(algorithm)
        self._algorithm_class: type[Any] = async_class if is_async else sync_class
        #: Concurrency slots are leases: every admitted call releases its own.
        self.leases = sync_class.spec.lease
        #: Whether anything must run after the call (release or refund).
        self.has_epilogue = self.leases or bool(refund_on)
        #: Whether each call carries its own token: a lease's name, or the name a
        #: refund finds its call by (see :func:`~limify.core.algorithms.base.refund_token`).
        self._names_calls = self.has_epilogue
        self._storage = storage
        self._on_storage_error = on_storage_error
        self._follows_default = storage is None or on_storage_error is None
        self._default_version = -1
        self._algorithm: Any = None
        if storage is not None:
            adapter_for(storage, is_async=is_async)  # a sync-only adapter on async code: TypeError now
        if not self._follows_default:
            self._algorithm = self._algorithm_class(
                adapter_for(storage, is_async=is_async, on_storage_error=on_storage_error)
            )
        #: The whole check of a call, settled now when nothing in it depends on the call.
        self._constant_call: Admission | None = None
        self._keyed_prefix: str | None = None
        if provider is None and not callable(cost) and not self._names_calls:
            if get_key is None:
                keys = limit_keys(self.scope, self._plan_ids, self._periods, self.shared, None)
                self._constant_call = Admission(keys, self.plans, self.shared, cost, "")
            elif len(self.plans) == 1 and not self.shared[0]:
                # limit_keys' single-limit layout, with the identity appended per call.
                self._keyed_prefix = limit_keys(self.scope, self._plan_ids, self._periods, self.shared, "")[0]

    def algorithm(self) -> Any:
        """The algorithm shell on the current storage (the process defaults may change)."""
        if self._follows_default and self._default_version != DEFAULTS.version:
            version, storage, policy = default_storage()
            adapter = adapter_for(
                self._storage if self._storage is not None else storage,
                is_async=self.is_async,
                on_storage_error=self._on_storage_error or policy,
            )
            self._algorithm = self._algorithm_class(adapter)
            self._default_version = version
        return self._algorithm

    def resolve(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Admission:
        """The storage keys, plans and cost of one call (and, for leases, a fresh token)."""
        if self._constant_call is not None:
            return self._constant_call
        if self._keyed_prefix is not None:  # one per-key limit, fixed cost: the usual keyed case
            encoded = encode_part(self.get_key(instance, args, kwargs))  # type: ignore[misc]
            return Admission((self._keyed_prefix + encoded,), self.plans, self.shared, self.cost, "")  # type: ignore[arg-type]
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
                self._algorithm_class.spec.check_plans(plans)
                if not callable(self.cost):  # a plan below the cost could never admit: say so, never wait
                    check_cost(self.cost, plans)
        keys = limit_keys(
            self.scope, plan_ids, periods, shared, None if self.get_key is None else encode_part(identity)
        )
        token = new_token() if self._names_calls else ""
        return Admission(keys, plans, shared, self._cost_of(call_args, kwargs, plans), token)

    def _cost_of(self, call_args: tuple[Any, ...], kwargs: dict[str, Any], plans: tuple[Plan, ...]) -> int:
        cost = self.cost
        if not callable(cost):
            return cost
        value = cost(*call_args, **kwargs)
        check_cost(value, plans, "the cost callable's result")
        return value

    def _pause(self, result: LimitationResult, key: str, waited: float, tries: int) -> float:
        """Raise, or return how long to sleep before trying again.

        ``waited`` is the time slept so far and ``tries`` the refusals before this one.
        """
        if not self.wait:
            raise RateLimitExceeded(result, key)
        if self.leases:
            # retry_after is when enough leases expire; a release can free a slot
            # at any moment before that. So poll, ever less often, within max_wait.
            pause = min(result.retry_after, FIRST_POLL * (1 << min(tries, 8)), LONGEST_POLL)
            if self.max_wait is not None:
                left = self.max_wait - waited
                if left <= 0:
                    raise RateLimitExceeded(result, key)
                pause = min(pause, left)
            return pause
        if self.max_wait is not None and waited + result.retry_after > self.max_wait:
            raise RateLimitExceeded(result, key)
        return result.retry_after

    def enter(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Admission:
        """Admit one sync call (consuming its cost), wait for it, or raise."""
        call = self.resolve(instance, args, kwargs)
        algorithm = self.algorithm()
        outcome = algorithm.run(call.keys, call.plans, call.cost, CONSUME, call.token)
        waited = 0.0
        tries = 0
        while not outcome[0]:
            pause = self._pause(to_result(outcome, call.plans), call.keys[outcome[4]], waited, tries)
            time.sleep(pause)
            waited += pause
            tries += 1
            outcome = algorithm.run(call.keys, call.plans, call.cost, CONSUME, call.token)
        return self._admitted(call, outcome[5])

    async def enter_async(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Admission:
        """Admit one async call (consuming its cost), wait for it, or raise.

        Cancelled while its lease acquire is on its way, it releases the lease
        before raising the cancellation: the acquire may have run on the server.
        """
        call = self.resolve(instance, args, kwargs)
        algorithm = self.algorithm()
        asking = True  # an acquire is in flight
        try:
            outcome = await algorithm.run(call.keys, call.plans, call.cost, CONSUME, call.token)
            waited = 0.0
            tries = 0
            while not outcome[0]:
                asking = False
                pause = self._pause(to_result(outcome, call.plans), call.keys[outcome[4]], waited, tries)
                await anyio.sleep(pause)
                waited += pause
                tries += 1
                asking = True
                outcome = await algorithm.run(call.keys, call.plans, call.cost, CONSUME, call.token)
        except anyio.get_cancelled_exc_class():
            if self.leases and asking:
                await self.leave_async(call, None)
            raise
        return self._admitted(call, outcome[5])

    def _admitted(self, call: Admission, admitted_us: int) -> Admission:
        """The admission as its give-back must name it: a lease by its token, a refund also by when."""
        if not self.refund_on or self.leases:
            return call
        return call._replace(token=refund_token(admitted_us, call.token))

    def _gives_back(self, error: BaseException | None) -> bool:
        return self.leases or (error is not None and isinstance(error, self.refund_on))

    def leave(self, admission: Admission, error: BaseException | None) -> None:
        """After a sync call: release its slot, or refund it when it raised a refund_on error."""
        if self._gives_back(error):
            try:
                self.algorithm().decide(
                    admission.keys, admission.plans, admission.cost, REFUND, admission.token
                )
            except LimifyError as exc:  # the lease or cost will age out; the call's outcome wins
                log.warning("limify: could not give back the cost of a call to %s: %s", admission.keys, exc)

    async def leave_async(self, admission: Admission, error: BaseException | None) -> None:
        """After an async call: release its slot, or refund it when it raised a refund_on error.

        The give-back is shielded from cancellation: a cancelled call still hands back what it took.
        """
        if self._gives_back(error):
            algorithm = self.algorithm()
            if isinstance(algorithm.adapter, InMemoryAdapter):
                # It never suspends, so no cancellation can cut it short (and a shield costs µs).
                await self._give_back_async(algorithm, admission)
                return
            with anyio.CancelScope(shield=True):
                await self._give_back_async(algorithm, admission)

    @staticmethod
    async def _give_back_async(algorithm: Any, admission: Admission) -> None:
        try:
            await algorithm.decide(admission.keys, admission.plans, admission.cost, REFUND, admission.token)
        except LimifyError as exc:
            log.warning("limify: could not give back the cost of a call to %s: %s", admission.keys, exc)

    # Handle operations: peek at or reset the limit a call with these arguments would use.

    def peek(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LimitationResult:
        """The decision a sync call with these arguments would get, consuming nothing."""
        call = self.resolve(instance, args, kwargs)
        result: LimitationResult = self.algorithm().check_all(call.keys, call.plans, call.cost, PEEK)
        return result

    async def peek_async(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> LimitationResult:
        """The decision an async call with these arguments would get, consuming nothing."""
        call = self.resolve(instance, args, kwargs)
        result: LimitationResult = await self.algorithm().check_all(call.keys, call.plans, call.cost, PEEK)
        return result

    def own_keys(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The keys a reset clears: the caller's own (a limit shared by all keys is kept)."""
        call = self.resolve(instance, args, kwargs)
        if self.get_key is None:
            return call.keys
        return tuple(key for key, shared in zip(call.keys, call.shared, strict=True) if not shared)

    def reset(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Clear the state a sync call with these arguments uses."""
        self.algorithm().reset_all(self.own_keys(instance, args, kwargs))

    async def reset_async(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Clear the state an async call with these arguments uses."""
        await self.algorithm().reset_all(self.own_keys(instance, args, kwargs))
