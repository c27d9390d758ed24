"""Rate strings: ``"<limit>/<unit>"`` such as ``"10/minute"`` or ``"5/s"``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from limify.core.plan import MONTH_SECONDS, Plan

__all__ = ["parse_rate", "parse_rates", "GlobalLimit", "RateSpec", "UNITS", "RATE_FORMAT"]

#: Unit names and aliases accepted after the slash, in seconds.
UNITS: dict[str, int] = {
    "second": 1, "seconds": 1, "sec": 1, "s": 1,
    "minute": 60, "minutes": 60, "min": 60, "m": 60,
    "hour": 3600, "hours": 3600, "h": 3600,
    "day": 86400, "days": 86400, "d": 86400,
    "month": MONTH_SECONDS, "months": MONTH_SECONDS, "mo": MONTH_SECONDS,
}  # fmt: skip
_CALENDAR_UNITS = {"month": "month", "months": "month", "mo": "month"}

RATE_FORMAT = (
    "'<limit>/<unit>' with a whole limit >= 1 and a unit among second (seconds, sec, s), "
    "minute (minutes, min, m), hour (hours, h), day (days, d), month (months, mo), "
    "e.g. '10/minute'"
)

# ASCII only: without re.ASCII, \d also matches other scripts' digits ("١٠/s", "１０/s"),
# which int() then reads as 10.
_RATE = re.compile(r"\s*(\d{1,13})\s*/\s*([A-Za-z]{1,7})\s*", re.ASCII)


def parse_rate(rate: str, *, plan_id: str = "default") -> Plan:
    """Parse ``"<limit>/<unit>"`` into a :class:`Plan` named ``plan_id``.

    Raises:
        TypeError: ``rate`` is not a string.
        ValueError: ``rate`` is not of the accepted format; the message names it.
    """
    if not isinstance(rate, str):
        raise TypeError(f"rate must be a str like '10/minute', got {rate!r}")
    match = _RATE.fullmatch(rate)
    unit = UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"invalid rate {rate!r}: expected {RATE_FORMAT}")
    limit = int(match.group(1))
    if limit < 1:
        raise ValueError(f"invalid rate {rate!r}: the limit must be >= 1; expected {RATE_FORMAT}")
    try:
        return Plan(plan_id, limit, unit, calendar=_CALENDAR_UNITS.get(match.group(2).lower()))
    except ValueError as exc:
        raise ValueError(f"invalid rate {rate!r}: {exc}") from None


@dataclass(frozen=True)
class GlobalLimit:
    """A limit shared by every key of a decorated callable.

    ``@rate_limit(["10/second", GlobalLimit("500/second")], key="user_id")``
    admits a call only when both the caller's own bucket and the bucket shared by
    all callers admit it, atomically.
    """

    plan: Plan

    def __init__(self, rate: str | Plan) -> None:
        object.__setattr__(self, "plan", rate if isinstance(rate, Plan) else parse_rate(rate))


#: What ``rate_limit(rate=...)`` accepts: a rate string (``;`` separates compound
#: limits), a Plan, a GlobalLimit, or a list of those.
RateSpec = Union[str, Plan, GlobalLimit, Sequence[Union[str, Plan, GlobalLimit]]]


def parse_rates(rates: RateSpec) -> list[tuple[Plan, bool]]:
    """Parse one or several limits into ``(plan, shared_by_all_keys)`` pairs.

    ``"10/second;1000/day"``, ``["10/second", "1000/day"]``, ``Plan(...)`` and
    ``GlobalLimit(...)`` items are accepted and may be mixed.

    Raises:
        ValueError: a rate is malformed, the list is empty, or two limits of the
            same kind would share a storage key (same plan id and period).
        TypeError: an item is of another type.
    """
    items = [rates] if isinstance(rates, (str, Plan, GlobalLimit)) else rates
    if not isinstance(items, Sequence) or isinstance(items, (bytes, bytearray)):
        raise TypeError(f"rate must be a rate string, a Plan, a GlobalLimit or a list of them, got {rates!r}")
    limits: list[tuple[Plan, bool]] = []
    for item in items:
        if isinstance(item, str):
            parts = item.split(";")
            if len(parts) > 1 and not all(part.strip() for part in parts):
                raise ValueError(f"invalid rate {item!r}: empty limit between ';'; expected {RATE_FORMAT}")
            limits.extend((parse_rate(part.strip() if len(parts) > 1 else part), False) for part in parts)
        elif isinstance(item, Plan):
            limits.append((item, False))
        elif isinstance(item, GlobalLimit):
            limits.append((item.plan, True))
        else:
            raise TypeError(f"each rate must be a rate string, a Plan or a GlobalLimit, got {item!r}")
    if not limits:
        raise ValueError(f"no limit given in {rates!r}; expected {RATE_FORMAT}")
    seen: set[tuple[str, int, bool]] = set()
    for plan, shared in limits:
        slot = (plan.id, plan.period_us, shared)
        if slot in seen:
            raise ValueError(
                f"two limits in {rates!r} have plan id {plan.id!r} and the same period; "
                "give them distinct periods or plan ids"
            )
        seen.add(slot)
    return limits
