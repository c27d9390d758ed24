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
single-limit key. Once the config stacks application-wide limits or a penalty on
a rule, its keys are tagged by identity alone (see :mod:`limify.core.request_check`).

Which requests a rule limits
----------------------------
The config's matching rule, or the rule passed in (a ``RateLimit`` dependency's,
a ``limit_view``'s), which then still limits only the requests its own ``method``
and ``path`` match. Exempt requests (``Rule(exempt=True)``, ``exempt_when``) and
every request while the limits are switched off (``Limify(enabled=False)``,
``limify.configure(enabled=False)``, a framework's ``ENABLED`` setting) are
decided :data:`UNLIMITED` without touching the storage. Decisions are added to
the request's :class:`~limify.core.request_scope.RequestScope` when an adapter
opened one.

Sync and async
--------------
The :class:`Limiter` prepares one :class:`~limify.core.check.Check` per request
and the engine runs it; :class:`SyncLimiter` and :class:`AsyncLimiter` differ only
in which of the engine's runners they use: ``SyncLimiter.check`` returns a
result, ``AsyncLimiter.check`` an awaitable of one. :class:`~limify.Limify`
builds whichever a framework needs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar, cast

from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.base import AlgorithmSpec, Outcome
from limify.core.answers import Unenforced, shadowed
from limify.core.check import CLEAR, PEEK, Check, Pending
from limify.core.context import Identity, RequestContext
from limify.core.decision import APPLICATION, UNLIMITED, Decision
from limify.core.engine import DEFAULT_POLICY, Engine, ready
from limify.core.local_checks import LocalRuns, decide_locally
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.plan import Plan
from limify.core.request_check import Layout, build_keys, grouped_ip, identity_of, layout, prepare, result_of
from limify.core.request_check import shared_layout
from limify.core.request_scope import current
from limify.core.resilience import Fallback
from limify.core.result import LimitationResult
from limify.core.rule_hooks import request_of
from limify.core.rules import LimifyConfig, Rule
from limify.core.storage import DEFAULTS, StorageLike, check_storage, default_storage
from limify.errors import PlanError, StorageError

DecisionT = TypeVar("DecisionT")
ResultT = TypeVar("ResultT")
NoneT = TypeVar("NoneT")

log = logging.getLogger("limify")
#: Distinct (rule, plans, cost) combinations logged as unservable; later ones stay silent.
_UNSERVABLE_LOG_LIMIT = 1000

__all__ = ["Limiter", "SyncLimiter", "AsyncLimiter", "Decision", "UNLIMITED", "APPLICATION", "build_keys"]

# The result carried by a 503 decision (storage unreachable under fail_closed).
_REFUSED_BY_STORAGE = LimitationResult(allowed=False, remaining=0, limit=0, reset_after=0.0, retry_after=0.0)
_NOT_LIMITED = Decision(UNLIMITED)

#: ``(context, rule) -> Plan | plan name | Sequence[Plan] | None`` (awaitable for async limiters).
PlanResolver = Callable[[RequestContext, Rule], Any]
#: ``(context) -> (identity_type, identity_value) | None``
KeyResolver = Callable[[RequestContext], "Identity | None"]


class Limiter(Generic[DecisionT, ResultT, NoneT]):
    """Request context -> rule -> plan -> identity -> one Check for the engine.

    Written once: :class:`SyncLimiter` runs its checks with the engine's ``run``,
    :class:`AsyncLimiter` with ``run_async`` (awaiting async plan providers), so
    ``decide`` and ``check`` return values or awaitables of them.

    Args:
        own_memory: the store that stands for an unnamed ``memory://`` (the
            :class:`~limify.Limify`'s own); ``None``: the process-wide one.
        enabled: ``False`` admits every request uncounted.
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
        own_memory: InMemoryAdapter | None = None,
        enabled: bool = True,
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
        self.own_memory = own_memory
        self.enabled = enabled
        self._engines: dict[str, Engine] = {}
        self._unservable_seen: set[tuple[str, tuple[Plan, ...], Any]] = set()
        self._local = LocalRuns()

    def _engine(self, rule: Rule | None) -> Engine:
        """The engine of ``rule`` (``None``: the application-wide limits alone): its failure
        policy, shadow mode and ``on_breach`` (each follows :func:`limify.configure` where the
        rule leaves it open)."""
        name = APPLICATION if rule is None else rule.id
        on_breach = None if rule is None else rule.on_breach
        engine = self._engines.get(name)
        if engine is None or engine.settings.on_breach is not on_breach:
            engine = Engine(
                self.storage,
                is_async=self.is_async,
                policy=DEFAULT_POLICY
                if rule is None or rule.on_storage_error is None
                else rule.on_storage_error,
                name=name,
                source="web",
                shadow=None if rule is None else rule.shadow,
                on_breach=on_breach,
                cache_refusals=True,
                own_memory=self.own_memory,
            )
            shared = shared_layout(self.config, rule)
            if any(shared):  # a store may refuse to share a state beside per-identity ones
                engine.check_layout(shared)
            self._engines[name] = engine
        return engine

    def _spec(self, rule: Rule | None) -> AlgorithmSpec:
        if rule is None or rule.algorithm is None:
            return self._default_spec
        return algorithm_classes(rule.algorithm)[0].spec

    def identity(self, context: RequestContext, rule: Rule | None = None) -> Identity:
        """The identity ``context`` is counted under (by ``rule``'s ``key=`` when it has one)."""
        return identity_of(context, rule, self.key_resolver, self.config.ipv6_prefix)

    def _check(self, context: RequestContext, shape: Layout) -> Check | Pending:
        """The Check of one request, or a Pending one while a plan provider's answer is awaited."""
        rule, application = shape.rule, shape.application > 0
        identity = self.identity(context, rule)
        spec = self._spec(rule)
        config = self.config

        if self.plan_resolver is None or rule is None:
            return prepare(config, spec, rule, context, identity, application=application)

        def complete(found: Any) -> Check:
            return prepare(
                config, spec, rule, context, identity, application=application, found=found,
                provided=found is not None,
            )  # fmt: skip

        return Pending(self.plan_resolver(context, rule), complete)

    def _unservable(
        self, rule: Rule | None, check: Check | Pending, error: PlanError, policy: str
    ) -> Decision:
        """The failure policy's answer to a plan below the rule's cost, logged once per rule and plan."""
        plans, keys = (check.plans, check.keys) if isinstance(check, Check) else ((), ())
        rule_id = rule.id if rule is not None else APPLICATION
        seen = (rule_id, tuple(plans), None if rule is None or callable(rule.cost) else rule.cost)
        if seen not in self._unservable_seen and len(self._unservable_seen) < _UNSERVABLE_LOG_LIMIT:
            self._unservable_seen.add(seen)
            log.error("limify: rule %r cannot be checked: %s; answering with on_storage_error=%r",
                      rule_id, error, policy)  # fmt: skip
        if policy == "fail_open":
            return Decision(UNLIMITED, rule, plans, keys, answered_by_policy=True)
        return Decision(_REFUSED_BY_STORAGE, rule, plans, keys, plan_error=error)

    def _route(self, context: RequestContext, rule: Rule | None) -> Layout | Decision:
        """What limits a request: its check's layout, or the decision of a request nothing counts."""
        if not isinstance(context, RequestContext):
            raise TypeError(f"check() needs a limify.RequestContext, got {context!r}")
        scope = current()
        if not (self.enabled and DEFAULTS.enabled) or (scope is not None and not scope.enabled):
            return _NOT_LIMITED
        explicit = rule is not None
        if rule is not None:
            if not rule.matches(context.method, context.path):
                return _NOT_LIMITED
        else:
            rule = self.config.match(context.method, context.path)
        config = self.config
        exempt = config.exempt_when is not None and config.exempt_when(request_of(context))
        if not exempt and rule is not None:
            exempt = rule.exempt or (
                rule.exempt_when is not None and bool(rule.exempt_when(request_of(context)))
            )
        # The application limits are counted once per request: by the first check that
        # meets them (the config's rule), or settled by an exemption.
        application = bool(config.application_plans) and not (
            explicit and scope is not None and scope.application_settled
        )
        if scope is not None and not explicit:
            scope.application_settled = True
        if exempt:
            return Decision(UNLIMITED, rule, exempt=True)
        if rule is None and not application:
            return _NOT_LIMITED
        if scope is not None and application:
            scope.application_settled = True
        return layout(config, rule, application)

    def decide(self, context: RequestContext, rule: Rule | None = None) -> DecisionT:
        """Check ``context`` against its rule (or ``rule``), consuming the rule's cost if admitted.

        Never raises for storage failures or unservable plans: the :class:`Decision`
        says 503 (or admits, under ``fail_open``).
        """
        shape = self._route(context, rule)
        if isinstance(shape, Decision):
            return cast(DecisionT, ready(self.is_async, shape))
        matched = shape.rule
        engine = self._engine(matched)
        if matched is not None and self.plan_resolver is None:
            run = self._local.run_for(self.config, self._spec(matched), matched, engine)
            if run is not None:  # an in-memory store's hot path (see limify.core.local_checks)
                decided = decide_locally(matched, self.identity(context, matched), run)
                return cast(DecisionT, ready(self.is_async, decided))
        # One object, called with the store's answer or with the error the check raised:
        # what a check in flight keeps alive (closures would add a cell per variable).
        deciding = _Deciding(self, engine, shape, current())
        try:
            check = self._check(context, shape)
        except PlanError as error:  # a cost callable's cost above the limit: the failure policy answers
            return cast(DecisionT, ready(self.is_async, deciding.failed(Pending(None, _never), error)))
        return cast(DecisionT, engine.runner(check, deciding, deciding))

    def check(self, context: RequestContext, rule: Rule | None = None) -> ResultT:
        """The :class:`~limify.LimitationResult` of ``context`` under its rule.

        Raises:
            limify.StorageError: storage is unreachable and the rule fails closed.
            limify.PlanError: the plan provider chose a plan whose limit is below the rule's cost.
        """
        shape = self._route(context, rule)
        if isinstance(shape, Decision):
            return cast(ResultT, ready(self.is_async, shape.result))

        def finish(check: Check, outcome: Outcome) -> LimitationResult:
            return result_of(outcome, check, shape)

        return cast(ResultT, self._engine(shape.rule).runner(self._check(context, shape), finish))

    # Peek and reset: the state of one identity under one rule, without a request.

    def _identity_check(
        self, rule: Rule | None, identity: Identity | RequestContext, plan: Any
    ) -> tuple[Check, Layout]:
        config = self.config
        if isinstance(identity, RequestContext):
            found = self.identity(identity, rule)
            context = identity
        elif isinstance(identity, tuple) and len(identity) == 2 and isinstance(identity[0], str):
            found = ("ip", grouped_ip(identity[1], config.ipv6_prefix)) if identity[0] == "ip" else identity
            context = RequestContext("GET", "/")
        else:
            raise TypeError(f"identity must be (identity_type, value) or a RequestContext, got {identity!r}")
        application = bool(config.application_plans)
        shape = layout(config, rule, application)
        cost = 1 if rule is None or callable(rule.cost) else rule.cost
        check = prepare(
            config, self._spec(rule), rule, context, found, application=application, found=plan,
            provided=plan is not None, cost=cost,
        )  # fmt: skip
        return check, shape

    def peek(self, rule: Rule | None, identity: Identity | RequestContext, *, plan: Any = None) -> ResultT:
        """What a request of ``identity`` under ``rule`` would get now, consuming nothing.

        ``rule`` ``None`` peeks at the application-wide limits alone; ``plan`` is the
        plan a provider would choose (``None``: the rule's own).
        """
        check, shape = self._identity_check(rule, identity, plan)

        def finish(check: Check, outcome: Outcome) -> LimitationResult:
            return result_of(outcome, check, shape)

        return cast(ResultT, self._engine(rule).runner(check._replace(mode=PEEK), finish))

    def reset(self, rule: Rule | None, identity: Identity | RequestContext, *, plan: Any = None) -> NoneT:
        """Forget ``identity``'s state under ``rule`` (its penalty included); ``None``: the application's."""
        check, shape = self._identity_check(rule, identity, plan)
        own = APPLICATION if rule is None else rule.id
        keys = [key for key, scope in zip(check.keys, shape.scopes(check)) if scope == own]
        if shape.penalty and (rule is None or rule.penalty is not None):
            keys.append(check.keys[-1])  # the penalty this rule (or the application) owns
        return cast(NoneT, self._engine(rule).runner(Check(check.spec, tuple(keys), (), 0, CLEAR)))


class _Deciding:
    """Turns one request's check answer into its :class:`Decision`, recorded in the request scope."""

    __slots__ = ("limiter", "engine", "shape", "scope")

    def __init__(self, limiter: Limiter[Any, Any, Any], engine: Engine, shape: Layout, scope: Any) -> None:
        self.limiter, self.engine, self.shape, self.scope = limiter, engine, shape, scope

    def _recorded(self, decision: Decision) -> Decision:
        if self.scope is not None:
            self.scope.add(decision)
        return decision

    def __call__(self, check: Check, outcome: Outcome | Exception) -> Decision:
        """The decision of a check the store (or the failure policy) answered, or that raised ``outcome``."""
        if isinstance(outcome, Exception):
            return self.failed(check, outcome)
        shape = self.shape
        enforced = type(outcome) is not Unenforced and not shadowed(self.engine.settings)
        return self._recorded(Decision(
            result_of(outcome, check, shape), shape.rule, shape.counted(check), check.keys,
            answered_by_policy=type(outcome) is Fallback, scopes=shape.scopes(check), enforced=enforced,
        ))  # fmt: skip

    def failed(self, check: Check | Pending, error: Exception) -> Decision:
        """The decision of a check that raised: storage down (503) or a plan it cannot serve."""
        matched = self.shape.rule
        if isinstance(error, StorageError):
            assert isinstance(check, Check)
            return self._recorded(Decision(_REFUSED_BY_STORAGE, matched, check.plans, check.keys, error))
        policy = (matched.on_storage_error if matched is not None else None) or default_storage()[2]
        return self._recorded(self.limiter._unservable(matched, check, cast(PlanError, error), policy))


class SyncLimiter(Limiter[Decision, LimitationResult, None]):
    """A limiter for sync code (Flask, Django's sync views, workers)."""

    is_async = False


class AsyncLimiter(Limiter[Awaitable[Decision], Awaitable[LimitationResult], Awaitable[None]]):
    """A limiter for async code (ASGI middleware, FastAPI dependencies, Django's async views).

    Plan providers may be async: their awaitable answer is awaited.
    """

    is_async = True


def _never(value: Any) -> Check:  # pragma: no cover - the Pending of a check that failed to build
    raise AssertionError("never completed")
