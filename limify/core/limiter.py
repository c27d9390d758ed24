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
they follow :func:`~limify.core.keys.limit_keys` like ``@rate_limit``'s: rule and
identity form a hash tag and each limit adds its plan and period::

    limify:{items:user:42}:default.1s
    limify:{items:user:42}:default.86400s

A :class:`~limify.GlobalLimit` in a rule's rate is one bucket for every identity
(``limify:{items}:default.1s``), and then every key of the rule shares the tag.
Encoded parts never contain braces, so a compound key never equals a
single-limit key.

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
from limify.core.keys import encode_part, limit_keys
from limify.core.plan import Plan
from limify.core.plans import plans as plan_registry
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig, Rule
from limify.core.storage import StorageLike, adapter_for, check_storage, default_storage
from limify.errors import PlanError, StorageError

log = logging.getLogger("limify")
#: Distinct (rule, plans, cost) combinations logged as unservable; later ones stay silent.
_UNSERVABLE_LOG_LIMIT = 1000

__all__ = ["Limiter", "SyncLimiter", "AsyncLimiter", "Decision", "UNLIMITED", "build_keys"]

#: The result for a request no rule limits (and for fail-open storage failures):
#: admitted, ``limit == 0`` (no real plan has a zero limit).
UNLIMITED = LimitationResult(allowed=True, remaining=0, limit=0, reset_after=0.0, retry_after=0.0)
# The result carried by a 503 decision (storage unreachable under fail_closed).
_REFUSED_BY_STORAGE = LimitationResult(allowed=False, remaining=0, limit=0, reset_after=0.0, retry_after=0.0)

#: ``(context, rule) -> Plan | plan name | Sequence[Plan] | None`` (awaitable for async limiters).
PlanResolver = Callable[[RequestContext, Rule], Any]
#: ``(context) -> (identity_type, identity_value) | None``
KeyResolver = Callable[[RequestContext], "Identity | None"]


@dataclass(frozen=True)
class Decision:
    """Everything a framework adapter needs to answer one request.

    ``status`` is 200 (admitted), 429 (over the limit) or 503: storage
    unreachable under a ``fail_closed`` rule (``storage_error`` says why), or a
    plan chosen by the plan provider whose limit is below the rule's cost
    (``plan_error`` says which; the ``fail_open`` policy admits instead). A
    request admitted because storage failed open has :data:`UNLIMITED` as result.
    """

    result: LimitationResult
    rule: Rule | None = None
    plans: tuple[Plan, ...] = ()
    keys: tuple[str, ...] = ()
    storage_error: StorageError | None = None
    plan_error: PlanError | None = None

    @property
    def status(self) -> int:
        if self.storage_error is not None or self.plan_error is not None:
            return 503
        return 200 if self.result.allowed else 429

    @property
    def limited(self) -> bool:
        """False when no limit counted this request (no rule, storage or plan failed either way)."""
        return self.result is not UNLIMITED and self.storage_error is None and self.plan_error is None


def build_keys(
    rule: Rule, plans: Sequence[Plan], shared: Sequence[bool], identity: Identity
) -> tuple[str, ...]:
    """The storage keys of one check (see module docs)."""
    identity_type, identity_value = identity
    return limit_keys(
        encode_part(rule.id),
        [encode_part(plan.id) for plan in plans],
        [plan.period_us for plan in plans],
        shared,
        f"{encode_part(identity_type)}:{encode_part(identity_value)}",
    )


def _limits(found: Any, rule: Rule) -> tuple[tuple[Plan, ...], tuple[bool, ...]]:
    """The plans of one check and which are shared: the provider's, plus the rule's global limits."""
    if inspect.iscoroutine(found):
        found.close()
        raise TypeError(
            f"rule {rule.id!r}: an async plan provider needs the async limiter (Limify.async_limiter)"
        )
    if found is None:
        return rule.plans, rule.shared
    if isinstance(found, str):
        found = plan_registry.plan_for(found)
    if isinstance(found, Plan):
        chosen: tuple[Plan, ...] = (found,)
    elif isinstance(found, Sequence) and found and all(isinstance(plan, Plan) for plan in found):
        chosen = tuple(found)
    else:
        raise TypeError(
            f"plan provider returned {found!r} for rule {rule.id!r}; "
            "expected a Plan, a plan name, a list of plans or None"
        )
    # The provider's plans replace the per-identity limits; global ones stay.
    kept = tuple(plan for plan, shared in zip(rule.plans, rule.shared, strict=True) if shared)
    return chosen + kept, (False,) * len(chosen) + (True,) * len(kept)


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
        algorithm_class: type[Any] | None = None,
    ) -> None:
        if not isinstance(config, LimifyConfig):
            raise TypeError(f"config must be a limify.LimifyConfig, got {config!r}")
        if storage is not None:
            check_storage(storage)
        if algorithm_class is None:
            algorithm_classes(algorithm)
        self.config = config
        self.algorithm = algorithm
        self.plan_resolver = plan_resolver
        self.key_resolver = key_resolver
        self.storage = storage
        # A custom shell class the caller built an instance of, for rules naming no algorithm.
        self._algorithm_class = algorithm_class
        self._default_version = -1
        self._shells: dict[tuple[str, str], Any] = {}
        self._unservable_seen: set[tuple[str, tuple[Plan, ...], int]] = set()

    def _shell(self, rule: Rule) -> tuple[Any, str]:
        """The algorithm shell for ``rule`` on its guarded storage, and the failure policy applied."""
        version, default, default_policy = default_storage()
        if version != self._default_version:
            # Follow the process defaults, like @rate_limit: configure() applies on the next check.
            self._shells = {}
            self._default_version = version
        policy = rule.on_storage_error or default_policy
        name = rule.algorithm or self.algorithm
        shell = self._shells.get((name, policy))
        if shell is None:
            if self._algorithm_class is not None and name == self.algorithm:
                shell_class = self._algorithm_class
            else:
                shell_class = algorithm_classes(name)[1 if self.is_async else 0]
            storage = self.storage if self.storage is not None else default
            shell = shell_class(adapter_for(storage, is_async=self.is_async, on_storage_error=policy))
            self._shells[(name, policy)] = shell
        return shell, policy

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

    def _prepare(
        self, context: RequestContext, rule: Rule, found: Any
    ) -> tuple[tuple[Plan, ...], tuple[str, ...]]:
        plans, shared = _limits(found, rule)
        return plans, build_keys(rule, plans, shared, self.identity(context))

    @staticmethod
    def _decided(rule: Rule, plans: tuple[Plan, ...], keys: tuple[str, ...], result: LimitationResult,
                 shell: Any, policy: str) -> Decision:  # fmt: skip
        if policy == "fail_open" and not getattr(shell.adapter, "healthy", True):
            result = UNLIMITED  # admitted without counting: claim no limit in headers
        return Decision(result, rule, plans, keys)

    def _unservable(self, rule: Rule, plans: tuple[Plan, ...], keys: tuple[str, ...], error: PlanError,
                    policy: str) -> Decision:  # fmt: skip
        """The failure policy's answer to a plan below the rule's cost, logged once per rule and plan."""
        seen = (rule.id, tuple(plans), rule.cost)
        if seen not in self._unservable_seen and len(self._unservable_seen) < _UNSERVABLE_LOG_LIMIT:
            self._unservable_seen.add(seen)
            log.error("limify: rule %r cannot be checked: %s; answering with on_storage_error=%r",
                      rule.id, error, policy)  # fmt: skip
        if policy == "fail_open":
            return Decision(UNLIMITED, rule, plans, keys)
        return Decision(_REFUSED_BY_STORAGE, rule, plans, keys, plan_error=error)

    @staticmethod
    def _result(decision: Decision) -> LimitationResult:
        if decision.storage_error is not None:
            raise decision.storage_error
        if decision.plan_error is not None:
            raise decision.plan_error
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
        plans, keys = self._prepare(context, rule, found)
        shell, policy = self._shell(rule)
        try:
            result = shell.check_all(keys, plans, rule.cost)
        except StorageError as exc:
            return Decision(_REFUSED_BY_STORAGE, rule, plans, keys, exc)
        except PlanError as exc:
            return self._unservable(rule, plans, keys, exc, policy)
        return self._decided(rule, plans, keys, result, shell, policy)

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
        plans, keys = self._prepare(context, rule, found)
        shell, policy = self._shell(rule)
        try:
            result = await shell.check_all(keys, plans, rule.cost)
        except StorageError as exc:
            return Decision(_REFUSED_BY_STORAGE, rule, plans, keys, exc)
        except PlanError as exc:
            return self._unservable(rule, plans, keys, exc, policy)
        return self._decided(rule, plans, keys, result, shell, policy)

    async def check(self, context: RequestContext, rule: Rule | None = None) -> LimitationResult:
        """Awaitable twin of :meth:`SyncLimiter.check`."""
        return self._result(await self.decide(context, rule))
