"""Limify: wires a config, an algorithm, a storage and the resolvers into limiters.

One :class:`Limify` serves sync and async code alike. Frameworks pick the limiter
they need once, at set-up: the ASGI middleware and FastAPI dependencies use
:attr:`Limify.async_limiter`, Flask and Django's sync path
:attr:`Limify.sync_limiter`. Both share the config, the storage (a URL stands for
a sync and an async client on one server) and therefore the buckets.

Each ``Limify`` has its own in-memory store: ``storage="memory://"``, or no storage
while the process default is the initial ``"memory://"``, counts in that store, so
two apps (or two test cases) never share counts. Name a store to share it:
``"memory://shared"`` is one store per process for every ``Limify`` and limit that
names it; passing one :class:`~limify.InMemoryAdapter` to several shares it too.

:meth:`Limify.peek` and :meth:`Limify.reset` read and clear one identity's state
under one rule (its config's, or a ``RateLimit``'s / ``limit_view``'s registered
with it); :data:`~limify.core.decision.APPLICATION` names the application-wide limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from functools import cached_property
from typing import Any

from limify.core.algorithms import ALGORITHMS, algorithm_classes
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.context import Identity, RequestContext
from limify.core.decision import APPLICATION
from limify.core.limiter import AsyncLimiter, KeyResolver, Limiter, PlanResolver, SyncLimiter
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.plans import plans
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig, Rule
from limify.core.storage import StorageLike, check_storage, is_private_memory, private_stores

__all__ = ["Limify"]


def _plan_resolver(provider: Any) -> PlanResolver | None:
    if provider is None:
        return None
    if isinstance(provider, str):
        return plans.provider(provider)  # registered with limify.plans.register_provider()
    resolve = getattr(provider, "resolve", None)
    if callable(resolve):
        return resolve  # type: ignore[no-any-return]
    if callable(provider):
        # A plain callable takes the context alone, as in limify.plans.register_provider().
        return lambda context, rule: provider(context)
    raise TypeError(
        "plan_provider must have resolve(context, rule) -> Plan | None (or be such a callable), "
        f"got {provider!r}"
    )


def _registered_name(shell: SyncAlgorithm | AsyncAlgorithm) -> str | None:
    for name, classes in ALGORITHMS.items():
        if type(shell) in classes:
            return name
    return None


class Limify:
    """Rate limits for a web application.

    Args:
        algorithm: the default algorithm's name (``"token_bucket"``), or an
            algorithm shell bound to its storage, e.g.
            ``AsyncTokenBucketAlgorithm(RedisAsyncAdapter(client))``, which then
            also sets the storage and whether :attr:`limiter` is sync or async.
        config: a :class:`~limify.LimifyConfig` (or a dict of its arguments).
        plan_provider: an object with ``resolve(context, rule)``, a callable
            ``(context)``, or the name of a provider registered with
            ``limify.plans.register_provider``. It returns a Plan, a registered
            plan name, a list of plans, or ``None`` for the rule's own rate under
            the plan id ``default``. Async limiters await it when it returns an
            awaitable.
        key_resolver: ``(context) -> (identity_type, value) | None`` to count a
            request under another identity than the built-in priority
            (user, org, API key, IP, anonymous); ``None`` falls back to it.
        storage: a URL or adapter; ``None`` follows the process default
            (:func:`limify.configure`), which may change after set-up. An unnamed
            ``memory://`` is this ``Limify``'s own store (see the module docs).
        enabled: ``False`` switches every limit of this ``Limify`` off: requests are
            admitted uncounted and carry no headers (the frameworks' ``ENABLED`` setting).
    """

    def __init__(
        self,
        algorithm: str | SyncAlgorithm | AsyncAlgorithm = "token_bucket",
        config: LimifyConfig | Mapping[str, Any] | None = None,
        plan_provider: Any = None,
        key_resolver: KeyResolver | None = None,
        *,
        storage: StorageLike | None = None,
        enabled: bool = True,
    ) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True or False, got {enabled!r}")
        self.enabled = enabled
        #: This Limify's own in-memory store (see the module docs).
        self.memory = InMemoryAdapter()
        private_stores.add(self.memory)
        #: Rules checked outside the config (RateLimit dependencies, limit_view), by id.
        self._adopted: dict[str, Rule] = {}
        if isinstance(config, Mapping):
            config = LimifyConfig(**config)
        if not isinstance(config, LimifyConfig):
            raise TypeError(
                f"config must be a limify.LimifyConfig (or a dict of its arguments), got {config!r}"
            )
        if key_resolver is not None and not callable(key_resolver):
            raise TypeError(
                f"key_resolver must be a callable (context) -> (type, value) | None, got {key_resolver!r}"
            )
        self.config = config
        self.plan_resolver = _plan_resolver(plan_provider)
        self.key_resolver = key_resolver
        self._shell: SyncAlgorithm | AsyncAlgorithm | None = None
        if isinstance(algorithm, (SyncAlgorithm, AsyncAlgorithm)):
            if storage is not None:
                raise TypeError("pass storage= or an algorithm bound to a storage, not both")
            self._shell = algorithm
            # A registered shell also serves the other runtime; a custom one only its own.
            self.algorithm_name = _registered_name(algorithm) or f"custom:{type(algorithm).__qualname__}"
            self.storage: StorageLike | None = algorithm.adapter
            self.is_async = isinstance(algorithm, AsyncAlgorithm)
        else:
            spec = algorithm_classes(algorithm)[0].spec
            for rule in (*config.rules, *([config.default_rule] if config.default_rule else [])):
                if rule.algorithm is None:
                    try:
                        spec.check_plans(rule.plans)
                    except ValueError as exc:
                        raise ValueError(f"rule {rule.id!r}: {exc}") from None
            for plan_rule in (*config.rules, *([config.default_rule] if config.default_rule else [])):
                rule_spec = (
                    spec if plan_rule.algorithm is None else algorithm_classes(plan_rule.algorithm)[0].spec
                )
                try:
                    rule_spec.check_plans(config.application_plans)
                except ValueError as exc:
                    raise ValueError(f"application_limits under rule {plan_rule.id!r}: {exc}") from None
            if storage is not None:
                check_storage(storage)
            self.algorithm_name = algorithm
            self.storage = self.memory if is_private_memory(storage) else storage
            self.is_async = False

    def _build(self, limiter_class: type[Limiter[Any, Any, Any]]) -> Any:
        is_async = limiter_class.is_async
        shell = self._shell
        custom_class = None
        if shell is not None and self.algorithm_name not in ALGORITHMS:
            if isinstance(shell, AsyncAlgorithm) != is_async:
                kind = "async" if is_async else "sync"
                raise TypeError(f"{shell!r} is not registered in ALGORITHMS, so it has no {kind} twin")
            custom_class = type(shell)
        return limiter_class(
            self.config,
            storage=self.storage,
            algorithm=self.algorithm_name,
            plan_resolver=self.plan_resolver,
            key_resolver=self.key_resolver,
            algorithm_class=custom_class,
            own_memory=self.memory,
            enabled=self.enabled,
        )

    @cached_property
    def sync_limiter(self) -> SyncLimiter:
        """The limiter for sync code: ``check(context)`` returns a result."""
        limiter: SyncLimiter = self._build(SyncLimiter)
        return limiter

    @cached_property
    def async_limiter(self) -> AsyncLimiter:
        """The limiter for async code: ``await check(context)``."""
        limiter: AsyncLimiter = self._build(AsyncLimiter)
        return limiter

    @property
    def limiter(self) -> SyncLimiter | AsyncLimiter:
        """The limiter matching the algorithm: async for an async shell, else sync."""
        return self.async_limiter if self.is_async else self.sync_limiter

    def adopt(self, rule: Rule) -> Rule:
        """Register a rule checked outside the config (a dependency's, a view's), for :meth:`peek`/:meth:`reset`."""
        self._adopted[rule.id] = rule
        return rule

    def rule(self, rule_id: str) -> Rule | None:
        """The rule called ``rule_id``: the config's, the default rule, or an adopted one.

        :data:`~limify.core.decision.APPLICATION` gives ``None``: the application-wide limits.

        Raises:
            ValueError: no such rule (the message lists the known ids).
        """
        config = self.config
        if rule_id == APPLICATION:
            if not config.application_plans and config.penalty is None:
                raise ValueError("this Limify has no application_limits (nor penalty) to peek at or reset")
            return None
        for rule in (*config.rules, *([config.default_rule] if config.default_rule else [])):
            if rule.id == rule_id:
                return rule
        found = self._adopted.get(rule_id)
        if found is None:
            known = sorted(
                {r.id for r in config.rules} | set(self._adopted)
                | ({config.default_rule.id} if config.default_rule else set())
            )  # fmt: skip
            raise ValueError(f"no rule {rule_id!r} in this Limify; its rules are {known}")
        return found

    def peek(
        self, rule_id: str, identity: Identity | RequestContext, *, plan: Any = None
    ) -> LimitationResult:
        """What a request of ``identity`` (``("user", 42)`` or a context) would get under ``rule_id`` now."""
        return self.sync_limiter.peek(self.rule(rule_id), identity, plan=plan)

    def reset(self, rule_id: str, identity: Identity | RequestContext, *, plan: Any = None) -> None:
        """Forget ``identity``'s counts (and penalty) under ``rule_id``; its next request starts fresh."""
        self.sync_limiter.reset(self.rule(rule_id), identity, plan=plan)

    def peek_async(
        self, rule_id: str, identity: Identity | RequestContext, *, plan: Any = None
    ) -> Awaitable[LimitationResult]:
        """Awaitable :meth:`peek`, through the async limiter (``redis.asyncio``)."""
        found: Awaitable[LimitationResult] = self.async_limiter.peek(self.rule(rule_id), identity, plan=plan)
        return found

    def reset_async(
        self, rule_id: str, identity: Identity | RequestContext, *, plan: Any = None
    ) -> Awaitable[None]:
        """Awaitable :meth:`reset`."""
        return self.async_limiter.reset(self.rule(rule_id), identity, plan=plan)

    def __repr__(self) -> str:
        return f"Limify(algorithm={self.algorithm_name!r}, config={self.config!r}, storage={self.storage!r})"
