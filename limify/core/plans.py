"""Plans, named plans and plan providers.

A :class:`Plan` is a limit of ``limit`` units of cost per ``period_seconds``.
A :class:`PlanRegistry` holds named plans (``register("pro", "100/minute")``)
and named providers: objects with ``resolve(context, rule) -> Plan | None`` (the
seed's interface) or plain callables ``(context) -> Plan | str | None``, where a
string is a registered plan name or a rate string. :data:`plans` is the process
default registry that ``@rate_limit(plan=..., plan_provider=...)`` looks names up in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, Union, runtime_checkable

from limify.core.forksafe import fork_safe_lock
from limify.core.plan import CALENDARS, MAX_LIMIT, MAX_PERIOD_SECONDS, MONTH_SECONDS, Plan
from limify.core.rate import looks_like_rate, parse_rate

__all__ = [
    "Plan",
    "PlanProvider",
    "ProviderLike",
    "ResolvePlan",
    "PlanRegistry",
    "plans",
    "MAX_LIMIT",
    "MAX_PERIOD_SECONDS",
    "CALENDARS",
    "MONTH_SECONDS",
]


@runtime_checkable
class PlanProvider(Protocol):
    """Chooses the plan of one call or request; ``None`` means "use the default"."""

    def resolve(self, context: Any, rule: Any) -> Plan | None:
        """The plan for ``context`` under ``rule`` (``None`` for decorated functions)."""
        ...


#: A provider as users give it: a :class:`PlanProvider` or a callable of the context.
ProviderLike = Union[PlanProvider, Callable[[Any], Union[Plan, str, None]]]
#: A provider as Limify calls it.
ResolvePlan = Callable[[Any, Any], Union[Plan, None]]


_Found = TypeVar("_Found")


def _registered(table: dict[str, _Found], name: str, what: str) -> _Found:
    """``table[name]``, or a ValueError naming ``name`` and every registered name."""
    found = table.get(name)
    if found is None:
        known = ", ".join(repr(n) for n in sorted(table)) or "none registered"
        raise ValueError(f"unknown {what} {name!r}: registered {what.split()[-1]}s are {known}")
    return found


class PlanRegistry:
    """Named plans and named plan providers; thread-safe."""

    def __init__(self) -> None:
        self._plans: dict[str, Plan] = {}
        self._providers: dict[str, ResolvePlan] = {}
        self._lock = fork_safe_lock(self)

    def register(self, plan: Plan | str, rate: str | None = None) -> Plan:
        """Register ``plan`` under its id, or ``rate`` under the name ``plan``; return the Plan.

        ``register(Plan("pro", 100, 60))`` and ``register("pro", "100/minute")``
        are equivalent. Registering a name again replaces the plan for limits that
        look it up afterwards.
        """
        if isinstance(plan, Plan):
            if rate is not None:
                raise TypeError("register(plan) takes a Plan alone, or a name and a rate string")
            found = plan
        elif isinstance(plan, str) and plan and isinstance(rate, str):
            found = parse_rate(rate, plan_id=plan)
        else:
            raise TypeError(
                "register() takes a Plan, or a plan name and a rate string such as "
                f"register('pro', '100/minute'); got {plan!r}, {rate!r}"
            )
        with self._lock:
            self._plans[found.id] = found
        return found

    def get(self, name: str) -> Plan:
        """The plan registered as ``name``.

        Raises:
            ValueError: no such plan; the message lists the registered names.
        """
        return _registered(self._plans, name, "plan")

    def plan_for(self, value: Plan | str) -> Plan:
        """A Plan from a Plan, a registered plan name, or a rate string like ``"100/minute"`` or ``"100 per minute"``."""
        if isinstance(value, Plan):
            return value
        if isinstance(value, str):
            return parse_rate(value) if looks_like_rate(value) else self.get(value)
        raise TypeError(f"expected a Plan, a plan name or a rate string, got {value!r}")

    def register_provider(self, name: str, provider: ProviderLike) -> None:
        """Register a plan provider under ``name``."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"provider name must be a non-empty str, got {name!r}")
        with self._lock:
            self._providers[name] = self._as_resolver(provider)

    def provider(self, name: str) -> ResolvePlan:
        """The provider registered as ``name``, as a ``(context, rule) -> Plan | None`` callable.

        Raises:
            ValueError: no such provider; the message lists the registered names.
        """
        return _registered(self._providers, name, "plan provider")

    def resolver(self, provider: str | ProviderLike) -> ResolvePlan:
        """A provider given by name or as an object/callable, as a resolver."""
        return self.provider(provider) if isinstance(provider, str) else self._as_resolver(provider)

    def _as_resolver(self, provider: ProviderLike) -> ResolvePlan:
        if isinstance(provider, PlanProvider):

            def resolve_object(context: Any, rule: Any) -> Plan | None:
                return self._checked(provider.resolve(context, rule), provider)

            return resolve_object
        if callable(provider):

            def resolve_callable(context: Any, rule: Any) -> Plan | None:
                return self._checked(provider(context), provider)

            return resolve_callable
        raise TypeError(
            "a plan provider is an object with resolve(context, rule) or a callable "
            f"(context) -> Plan | str | None; got {provider!r}"
        )

    def _checked(self, value: Any, provider: Any) -> Plan | None:
        if value is None or isinstance(value, Plan):
            return value
        if isinstance(value, str):
            return self.plan_for(value)
        raise TypeError(f"plan provider {provider!r} returned {value!r}; expected a Plan, a str or None")

    def names(self) -> list[str]:
        """Registered plan names, sorted."""
        return sorted(self._plans)

    def __repr__(self) -> str:
        return f"PlanRegistry(plans={self.names()}, providers={sorted(self._providers)})"


#: The process-wide default registry.
plans = PlanRegistry()
