"""Plans, named plans and plan providers.

A :class:`Plan` is a limit of ``limit`` units of cost per ``period_seconds``.
A :class:`PlanRegistry` holds named plans (``register("pro", "100/minute")``)
and named providers: objects with ``resolve(context, rule) -> Plan | None`` (the
seed's interface) or plain callables ``(context) -> Plan | str | None``, where a
string is a registered plan name or a rate string. :data:`plans` is the process
default registry that ``@rate_limit(plan=..., plan_provider=...)`` looks names up in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Union, runtime_checkable

from limify.core.forksafe import fork_safe_lock

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

#: Accepted values of :attr:`Plan.calendar`.
CALENDARS = (None, "month")
#: ``period_seconds`` of a ``"<n>/month"`` plan for algorithms without calendars.
MONTH_SECONDS = 30 * 86400

#: Largest accepted ``limit``. Limits are tracked as doubles in Lua; this keeps
#: every count and product exact with a wide margin.
MAX_LIMIT = 10**12
#: Longest accepted period: 400 days, enough for yearly-ish quotas while keeping
#: microsecond arithmetic exact.
MAX_PERIOD_SECONDS = 400 * 86400


@dataclass(frozen=True, slots=True)
class Plan:
    """A rate limit: at most ``limit`` units of cost per ``period_seconds``.

    ``id`` names the plan (``"default"``, ``"free"``, ``"pro"`` ...); it is part of
    the storage key, so moving a caller to another plan starts a fresh bucket.
    Instances are immutable and validated on construction.
    """

    id: str
    limit: int
    period_seconds: float
    #: ``"month"`` for calendar months (``"1000/month"``): the ``quota`` algorithm
    #: resets at the first of each month, UTC; other algorithms use ``period_seconds``
    #: (30 days). ``None`` for plain periods.
    calendar: str | None = None
    #: ``period_seconds`` in whole microseconds, the unit algorithms work in.
    period_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise TypeError(f"Plan id must be a non-empty str, got {self.id!r}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise TypeError(f"Plan {self.id!r}: limit must be an int, got {self.limit!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"Plan {self.id!r}: limit must be between 1 and {MAX_LIMIT}, got {self.limit!r}")
        period = self.period_seconds
        if isinstance(period, bool) or not isinstance(period, (int, float)):
            raise TypeError(f"Plan {self.id!r}: period_seconds must be a number, got {period!r}")
        if not (math.isfinite(period) and 0 < period <= MAX_PERIOD_SECONDS):
            raise ValueError(
                f"Plan {self.id!r}: period_seconds must be > 0 and <= {MAX_PERIOD_SECONDS}, got {period!r}"
            )
        period_us = round(period * 1_000_000)
        if period_us < 1:
            raise ValueError(
                f"Plan {self.id!r}: period_seconds must be at least one microsecond, got {period!r}"
            )
        if self.calendar not in CALENDARS:
            raise ValueError(f"Plan {self.id!r}: calendar must be one of {CALENDARS}, got {self.calendar!r}")
        object.__setattr__(self, "period_us", period_us)


def _parse_rate(rate: str, *, plan_id: str = "default") -> Plan:
    from limify.core.rate import parse_rate  # rate.py builds Plans: import late

    return parse_rate(rate, plan_id=plan_id)


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
            found = _parse_rate(rate, plan_id=plan)
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
        found = self._plans.get(name)
        if found is None:
            known = ", ".join(repr(n) for n in sorted(self._plans)) or "none registered"
            raise ValueError(f"unknown plan {name!r}: registered plans are {known}")
        return found

    def plan_for(self, value: Plan | str) -> Plan:
        """A Plan from a Plan, a registered plan name, or a rate string like ``"100/minute"``."""
        if isinstance(value, Plan):
            return value
        if isinstance(value, str):
            return _parse_rate(value) if "/" in value else self.get(value)
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
        found = self._providers.get(name)
        if found is None:
            known = ", ".join(repr(n) for n in sorted(self._providers)) or "none registered"
            raise ValueError(f"unknown plan provider {name!r}: registered providers are {known}")
        return found

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
