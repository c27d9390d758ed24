"""The Limiter: request context -> rule -> plan -> identity key -> algorithm -> decision.

Storage keys
------------
A rule with one limit uses one key::

    limify:{rule_id}:{plan_id}:{identity_type}:{identity_value}
    limify:items:default:user:42

Each part goes through :func:`~limify.core.keys.encode_part`, so no two rules,
plans or identities share a key whatever characters they contain, and huge values
are hashed. A compound rate (``"10/second;1000/day"``) checks one key per limit in
one atomic step; Redis Cluster requires those keys to live in one hash slot, so
the common part becomes a hash tag and each limit adds its period::

    limify:{items:default:user:42}:1s
    limify:{items:default:user:42}:86400s

Encoded parts never contain braces, so a compound key can never equal a
single-limit key, and the hash tag is exactly the common part.

Sync and async
--------------
:class:`SyncLimiter` and :class:`AsyncLimiter` share everything but the call to
the algorithm shell: ``SyncLimiter.check`` returns a result, ``AsyncLimiter.check``
an awaitable of one. :class:`~limify.Limify` builds whichever a framework needs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from limify.core.algorithms import algorithm_classes
from limify.core.context import Identity, RequestContext
from limify.core.keys import PREFIX, encode_part
from limify.core.plans import Plan
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig, Rule, window_name
from limify.core.storage import StorageLike, adapter_for, check_storage
from limify.decorator import get_default_storage
from limify.errors import StorageError

__all__ = ["Limiter", "SyncLimiter", "AsyncLimiter", "Decision", "UNLIMITED", "build_keys"]

logger = logging.getLogger("limify")

#: The result for a request no rule limits (and for fail-open storage failures):
#: admitted, ``limit == 0`` (no real plan has a zero limit).
UNLIMITED = LimitationResult(allowed=True, remaining=0, limit=0, reset_after=0.0, retry_after=0.0)

#: ``(context, rule) -> Plan | Sequence[Plan] | None`` (awaitable for async limiters).
PlanResolver = Callable[[RequestContext, Rule], Any]
#: ``(context) -> (identity_type, identity_value) | None``
KeyResolver = Callable[[RequestContext], "Identity | None"]


@dataclass(frozen=True)
class Decision:
    """Everything a framework adapter needs to answer one request.

    ``status`` is 200 (admitted), 429 (over the limit) or 503 (storage
    unreachable under a ``fail_closed`` rule).
    """

    result: LimitationResult
    rule: Rule | None = None
    plans: tuple[Plan, ...] = ()
    keys: tuple[str, ...] = ()
    storage_error: StorageError | None = None

    @property
    def status(self) -> int:
        if self.storage_error is not None and self.rule is not None:
            return 503 if self.rule.on_storage_error == "fail_closed" else 200
        return 200 if self.result.allowed else 429

    @property
    def limited(self) -> bool:
        """False when no limit was applied (no rule, or storage failed open)."""
        return self.result is not UNLIMITED


def build_keys(rule: Rule, plans: Sequence[Plan], identity: Identity) -> tuple[str, ...]:
    """The storage keys of one check (see module docs)."""
    identity_type, identity_value = identity
    common = ":".join(
        (
            encode_part(rule.id),
            encode_part(plans[0].id),
            encode_part(identity_type),
            encode_part(identity_value),
        )
    )
    if len(plans) == 1:
        return (f"{PREFIX}:{common}",)
    return tuple(f"{PREFIX}:{{{common}}}:{window_name(plan)}" for plan in plans)


def _as_plans(found: Any, rule: Rule) -> tuple[Plan, ...]:
    if inspect.iscoroutine(found):
        found.close()
        raise TypeError(
            f"rule {rule.id!r}: an async plan provider needs the async limiter (Limify.async_limiter)"
        )
    if found is None:
        return rule.plans
    if isinstance(found, Plan):
        return (found,)
    if isinstance(found, Sequence) and found and all(isinstance(plan, Plan) for plan in found):
        return tuple(found)
    raise TypeError(f"plan provider returned {found!r} for rule {rule.id!r}; expected a Plan, plans or None")


class Limiter:
    """Shared half of :class:`SyncLimiter` and :class:`AsyncLimiter` (resolution, keys, policy)."""

    is_async = False

    def __init__(
        self,
        config: LimifyConfig,
        *,
        storage: StorageLike | None = None,
        algorithm: str = "token_bucket",
        plan_resolver: PlanResolver | None = None,
        key_resolver: KeyResolver | None = None,
        shell: Any = None,
    ) -> None:
        if not isinstance(config, LimifyConfig):
            raise TypeError(f"config must be a limify.LimifyConfig, got {config!r}")
        if storage is not None:
            check_storage(storage)
        self.config = config
        self.algorithm = algorithm
        self.plan_resolver = plan_resolver
        self.key_resolver = key_resolver
        self.storage = storage
        # `shell`: an algorithm instance the caller built, used for rules naming no algorithm.
        self._given_shell = shell
        self._bound_to: Any = None
        self._shells: dict[str, Any] = {}
        if shell is None:
            algorithm_classes(algorithm)

    def _shell(self, rule: Rule) -> Any:
        storage = self.storage
        if storage is None:
            # Follow the process default, like @rate_limit: configure() applies on the next check.
            storage = get_default_storage()
            if storage is not self._bound_to:
                self._shells = {}
                self._bound_to = storage
        name = rule.algorithm or self.algorithm
        shell = self._shells.get(name)
        if shell is None:
            if self._given_shell is not None and name == self.algorithm:
                shell = self._given_shell
            else:
                sync_class, async_class = algorithm_classes(name)
                shell_class = async_class if self.is_async else sync_class
                shell = shell_class(adapter_for(storage, is_async=self.is_async))
            self._shells[name] = shell
        return shell

    def identity(self, context: RequestContext) -> Identity:
        """The identity ``context`` is counted under."""
        if self.key_resolver is not None:
            found = self.key_resolver(context)
            if found is not None:
                if not (
                    isinstance(found, tuple) and len(found) == 2 and isinstance(found[0], str) and found[0]
                ):
                    raise TypeError(f"key_resolver must return (identity_type, value) or None, got {found!r}")
                return found
        return context.identity()

    def keys(self, context: RequestContext, rule: Rule, plans: Sequence[Plan]) -> tuple[str, ...]:
        """The storage keys ``context`` uses under ``rule`` and ``plans``."""
        return build_keys(rule, plans, self.identity(context))

    def _failed(
        self, rule: Rule, plans: tuple[Plan, ...], keys: tuple[str, ...], exc: StorageError
    ) -> Decision:
        logger.warning(
            "limify: storage unreachable for rule %r (%s): %s", rule.id, rule.on_storage_error, exc
        )
        if rule.on_storage_error == "fail_open":
            return Decision(UNLIMITED, rule, plans, keys, exc)
        refused = LimitationResult(False, 0, plans[0].limit, 0.0, 0.0)
        return Decision(refused, rule, plans, keys, exc)

    @staticmethod
    def _result(decision: Decision) -> LimitationResult:
        if decision.status == 503 and decision.storage_error is not None:
            raise decision.storage_error
        return decision.result

    def _rule(self, context: RequestContext, rule: Rule | None) -> Rule | None:
        if not isinstance(context, RequestContext):
            raise TypeError(f"check() needs a limify.RequestContext, got {context!r}")
        return rule if rule is not None else self.config.match(context.method, context.path)


class SyncLimiter(Limiter):
    """A limiter for sync code (Flask, Django's sync views, workers)."""

    is_async = False

    def decide(self, context: RequestContext, rule: Rule | None = None) -> Decision:
        """Check ``context`` against its rule (or ``rule``), consuming the rule's cost if admitted."""
        rule = self._rule(context, rule)
        if rule is None:
            return Decision(UNLIMITED)
        found = self.plan_resolver(context, rule) if self.plan_resolver is not None else None
        plans = _as_plans(found, rule)
        keys = self.keys(context, rule, plans)
        try:
            result = self._shell(rule).check_all(keys, plans, rule.cost)
        except StorageError as exc:
            return self._failed(rule, plans, keys, exc)
        return Decision(result, rule, plans, keys)

    def check(self, context: RequestContext, rule: Rule | None = None) -> LimitationResult:
        """The :class:`~limify.LimitationResult` of :meth:`decide`.

        Raises:
            limify.StorageError: storage is unreachable and the rule fails closed.
        """
        return self._result(self.decide(context, rule))


class AsyncLimiter(Limiter):
    """A limiter for async code (ASGI middleware, FastAPI dependencies, Django's async views)."""

    is_async = True

    async def decide(self, context: RequestContext, rule: Rule | None = None) -> Decision:
        """Awaitable twin of :meth:`SyncLimiter.decide`; plan providers may be async."""
        rule = self._rule(context, rule)
        if rule is None:
            return Decision(UNLIMITED)
        found = self.plan_resolver(context, rule) if self.plan_resolver is not None else None
        if inspect.isawaitable(found):
            found = await found
        plans = _as_plans(found, rule)
        keys = self.keys(context, rule, plans)
        try:
            result = await self._shell(rule).check_all(keys, plans, rule.cost)
        except StorageError as exc:
            return self._failed(rule, plans, keys, exc)
        return Decision(result, rule, plans, keys)

    async def check(self, context: RequestContext, rule: Rule | None = None) -> LimitationResult:
        """Awaitable twin of :meth:`SyncLimiter.check`."""
        return self._result(await self.decide(context, rule))
