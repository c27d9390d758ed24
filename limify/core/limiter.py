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
The :class:`Limiter` prepares one :class:`~limify.core.check.Check` per request
and the engine runs it; :class:`SyncLimiter` and :class:`AsyncLimiter` differ only
in which of the engine's runners they use: ``SyncLimiter.check`` returns a
result, ``AsyncLimiter.check`` an awaitable of one. :class:`~limify.Limify`
builds whichever a framework needs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.base import AlgorithmSpec, Outcome, check_cost, to_result
from limify.core.answers import Unenforced, shadowed
from limify.core.check import Check, Pending
from limify.core.context import Identity, RequestContext
from limify.core.engine import DEFAULT_POLICY, Engine, as_result
from limify.core.keys import encode_part, limit_keys
from limify.core.plan import Plan
from limify.core.plans import plans as plan_registry
from limify.core.resilience import Fallback
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig, Rule
from limify.core.storage import StorageLike, check_storage, default_storage
from limify.errors import PlanError, StorageError

DecisionT = TypeVar("DecisionT")
ResultT = TypeVar("ResultT")

log = logging.getLogger("limify")
#: Distinct (rule, plans, cost) combinations logged as unservable; later ones stay silent.
_UNSERVABLE_LOG_LIMIT = 1000

__all__ = ["Limiter", "SyncLimiter", "AsyncLimiter", "Decision", "UNLIMITED", "build_keys"]

#: The result for a request no rule limits: admitted, ``limit == 0`` (no real plan
#: has a zero limit).
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
    request the ``fail_open`` policy admitted has ``answered_by_policy`` set: its
    result is the one every entry point reports for it (the smallest limit full),
    but no limit counted it, so adapters send no rate-limit headers.
    """

    result: LimitationResult
    rule: Rule | None = None
    plans: tuple[Plan, ...] = ()
    keys: tuple[str, ...] = ()
    storage_error: StorageError | None = None
    plan_error: PlanError | None = None
    answered_by_policy: bool = False
    #: ``False`` in shadow mode: the request goes on, with no 429 and no rate-limit headers.
    enforced: bool = True

    @property
    def status(self) -> int:
        """The HTTP status this decision answers with (200, 429 or 503)."""
        if self.storage_error is not None or self.plan_error is not None:
            return 503
        return 200 if self.result.allowed or not self.enforced else 429

    @property
    def limited(self) -> bool:
        """False when no limit counted this request (no rule, storage or plan failed either way)."""
        return (
            self.result is not UNLIMITED
            and not self.answered_by_policy
            and self.enforced
            and self.storage_error is None
            and self.plan_error is None
        )


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


class Limiter(Generic[DecisionT, ResultT]):
    """Request context -> rule -> plan -> identity -> one Check for the engine.

    Written once: :class:`SyncLimiter` runs its checks with the engine's ``run``,
    :class:`AsyncLimiter` with ``run_async`` (awaiting async plan providers), so
    ``decide`` and ``check`` return values or awaitables of them.
    """

    is_async: ClassVar[bool] = False

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
        # A custom shell class the caller built an instance of, for rules naming no algorithm.
        self._default_spec = (
            algorithm_class.spec if algorithm_class is not None else algorithm_classes(algorithm)[0].spec
        )
        self.config = config
        self.algorithm = algorithm
        self.plan_resolver = plan_resolver
        self.key_resolver = key_resolver
        self.storage = storage
        self._engines: dict[str, Engine] = {}
        self._unservable_seen: set[tuple[str, tuple[Plan, ...], int]] = set()

    def _engine(self, rule: Rule) -> Engine:
        """The engine of ``rule``: its failure policy, shadow mode and ``on_breach`` (each follows
        :func:`limify.configure` where the rule leaves it open)."""
        engine = self._engines.get(rule.id)
        if engine is None or engine.settings.on_breach is not rule.on_breach:
            engine = Engine(
                self.storage,
                is_async=self.is_async,
                policy=DEFAULT_POLICY if rule.on_storage_error is None else rule.on_storage_error,
                name=rule.id,
                source="web",
                shadow=rule.shadow,
                on_breach=rule.on_breach,
                cache_refusals=True,
            )
            self._engines[rule.id] = engine
        return engine

    def _spec(self, rule: Rule) -> AlgorithmSpec:
        return self._default_spec if rule.algorithm is None else algorithm_classes(rule.algorithm)[0].spec

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

    def _check(self, context: RequestContext, rule: Rule) -> Check | Pending:
        """The Check of one request, or a Pending one while a plan provider's answer is awaited."""
        identity = self.identity(context)
        spec = self._spec(rule)

        def complete(found: Any) -> Check:
            plans, shared = _limits(found, rule)
            if found is not None:  # the rule's own plans were checked when it was built
                spec.check_plans(plans)
                check_cost(rule.cost, plans)
            return Check(spec, build_keys(rule, plans, shared, identity), plans, rule.cost)

        if self.plan_resolver is None:
            return complete(None)
        return Pending(self.plan_resolver(context, rule), complete)

    def _unservable(self, rule: Rule, check: Check | Pending, error: PlanError, policy: str) -> Decision:
        """The failure policy's answer to a plan below the rule's cost, logged once per rule and plan."""
        plans, keys = (check.plans, check.keys) if isinstance(check, Check) else ((), ())
        seen = (rule.id, tuple(plans), rule.cost)
        if seen not in self._unservable_seen and len(self._unservable_seen) < _UNSERVABLE_LOG_LIMIT:
            self._unservable_seen.add(seen)
            log.error("limify: rule %r cannot be checked: %s; answering with on_storage_error=%r",
                      rule.id, error, policy)  # fmt: skip
        if policy == "fail_open":
            return Decision(UNLIMITED, rule, plans, keys, answered_by_policy=True)
        return Decision(_REFUSED_BY_STORAGE, rule, plans, keys, plan_error=error)

    def _rule(self, context: RequestContext, rule: Rule | None) -> Rule | None:
        if not isinstance(context, RequestContext):
            raise TypeError(f"check() needs a limify.RequestContext, got {context!r}")
        return rule if rule is not None else self.config.match(context.method, context.path)

    def decide(self, context: RequestContext, rule: Rule | None = None) -> DecisionT:
        """Check ``context`` against its rule (or ``rule``), consuming the rule's cost if admitted.

        Never raises for storage failures or unservable plans: the :class:`Decision`
        says 503 (or admits, under ``fail_open``).
        """
        rule = self._rule(context, rule)
        if rule is None:
            return cast(DecisionT, _ready(self.is_async, Decision(UNLIMITED)))
        matched, engine = rule, self._engine(rule)

        def finish(check: Check, outcome: Outcome) -> Decision:
            enforced = type(outcome) is not Unenforced and not shadowed(engine.settings)
            return Decision(
                to_result(outcome, check.plans), matched, check.plans, check.keys,
                answered_by_policy=type(outcome) is Fallback, enforced=enforced,
            )  # fmt: skip

        def failed(check: Check | Pending, error: Exception) -> Decision:
            if isinstance(error, StorageError):
                assert isinstance(check, Check)
                return Decision(_REFUSED_BY_STORAGE, matched, check.plans, check.keys, error)
            policy = matched.on_storage_error or default_storage()[2]
            return self._unservable(matched, check, cast(PlanError, error), policy)

        return cast(DecisionT, engine.runner(self._check(context, rule), finish, failed))

    def check(self, context: RequestContext, rule: Rule | None = None) -> ResultT:
        """The :class:`~limify.LimitationResult` of ``context`` under its rule.

        Raises:
            limify.StorageError: storage is unreachable and the rule fails closed.
            limify.PlanError: the plan provider chose a plan whose limit is below the rule's cost.
        """
        rule = self._rule(context, rule)
        if rule is None:
            return cast(ResultT, _ready(self.is_async, UNLIMITED))
        return cast(ResultT, self._engine(rule).runner(self._check(context, rule), as_result))


class SyncLimiter(Limiter[Decision, LimitationResult]):
    """A limiter for sync code (Flask, Django's sync views, workers)."""

    is_async = False


class AsyncLimiter(Limiter[Awaitable[Decision], Awaitable[LimitationResult]]):
    """A limiter for async code (ASGI middleware, FastAPI dependencies, Django's async views).

    Plan providers may be async: their awaitable answer is awaited.
    """

    is_async = True


async def _resolved(value: Any) -> Any:
    return value


def _ready(is_async: bool, value: Any) -> Any:
    """``value``, or an awaitable of it for async limiters (a request no rule limits)."""
    return _resolved(value) if is_async else value
