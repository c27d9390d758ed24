"""Rate strings: ``"10/minute"``, and the forms users paste from other libraries.

One limit is ``<limit>/<unit>`` or ``<limit> per <unit>``, the unit optionally
preceded by a whole multiplier: ``"10/minute"``, ``"100 per day"``, ``"1 per 5
minutes"``, ``"10/5m"``. Several limits are joined by ``;``, ``,`` or ``|``
(``"10/second, 1000/day"``). Units are those of :data:`UNITS`; ``month`` is a
calendar month (see :attr:`limify.Plan.calendar`), so it takes no multiplier.
Only ASCII digits and spaces are read: other scripts' digits (``"١٠/s"``) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from limify.core.plan import MONTH_SECONDS, Plan

__all__ = [
    "parse_rate",
    "parse_rates",
    "parse_duration",
    "looks_like_rate",
    "GlobalLimit",
    "RateSpec",
    "UNITS",
    "RATE_FORMAT",
]

#: Unit names and aliases accepted after the slash, in seconds.
UNITS: dict[str, int] = {
    "second": 1, "seconds": 1, "sec": 1, "secs": 1, "s": 1,
    "minute": 60, "minutes": 60, "min": 60, "mins": 60, "m": 60,
    "hour": 3600, "hours": 3600, "hr": 3600, "hrs": 3600, "h": 3600,
    "day": 86400, "days": 86400, "d": 86400,
    "month": MONTH_SECONDS, "months": MONTH_SECONDS, "mo": MONTH_SECONDS,
}  # fmt: skip
_CALENDAR_UNITS = {"month": "month", "months": "month", "mo": "month"}

RATE_FORMAT = (
    "'<limit>/<unit>' or '<limit> per <unit>', the unit optionally after a whole multiplier "
    "('10/minute', '100 per day', '1 per 5 minutes', '10/5m'), several joined by ';', ',' or '|'; "
    "a whole limit >= 1 and a unit among second (seconds, sec, s), minute (minutes, min, m), "
    "hour (hours, hr, h), day (days, d), month (months, mo: a calendar month, no multiplier)"
)

# ASCII only: without re.ASCII, \d also matches other scripts' digits ("١٠/s", "１０/s"),
# which int() then reads as 10, and \s other scripts' spaces ("10\u2009/s").
_RATE = re.compile(
    r"\s*(\d{1,13})\s*(?:/|\s[Pp][Ee][Rr]\s)\s*(?:(\d{1,13})\s*)?([A-Za-z]{1,7})\s*",
    re.ASCII,
)
#: What separates the limits of a compound rate string.
_SEPARATORS = re.compile(r"[;,|]")


def looks_like_rate(text: str) -> bool:
    """Whether ``text`` is meant as a rate string rather than a plan name (it has ``/`` or `` per ``)."""
    return "/" in text or " per " in text.lower()


def parse_rate(rate: str, *, plan_id: str = "default") -> Plan:
    """Parse one limit (see the module docs) into a :class:`Plan` named ``plan_id``.

    Raises:
        TypeError: ``rate`` is not a string.
        ValueError: ``rate`` is not of an accepted form; the message names it and lists them.
    """
    if not isinstance(rate, str):
        raise TypeError(f"rate must be a str like '10/minute', got {rate!r}")
    match = _RATE.fullmatch(rate)
    unit_name = match.group(3).lower() if match else ""
    unit = UNITS.get(unit_name)
    if match is None or unit is None:
        raise ValueError(f"invalid rate {rate!r}: expected {RATE_FORMAT}")
    limit = int(match.group(1))
    if limit < 1:
        raise ValueError(f"invalid rate {rate!r}: the limit must be >= 1; expected {RATE_FORMAT}")
    multiplier = 1 if match.group(2) is None else int(match.group(2))
    if multiplier < 1:
        raise ValueError(f"invalid rate {rate!r}: the multiplier must be >= 1; expected {RATE_FORMAT}")
    calendar = _CALENDAR_UNITS.get(unit_name)
    if calendar is not None and multiplier != 1:
        raise ValueError(
            f"invalid rate {rate!r}: a month is a calendar month and takes no multiplier; "
            f"write '{limit}/month', or count days ('{limit} per {30 * multiplier} days')"
        )
    try:
        return Plan(plan_id, limit, unit * multiplier, calendar=calendar)
    except ValueError as exc:
        raise ValueError(f"invalid rate {rate!r}: {exc}") from None


_DURATION = re.compile(r"\s*(\d{1,13})\s*([A-Za-z]{1,7})\s*", re.ASCII)


def parse_duration(value: float | str) -> float:
    """Seconds from a number of seconds or a duration string: ``"1 hour"``, ``"10m"``, ``"30 seconds"``.

    Raises:
        TypeError: ``value`` is neither a number nor a string.
        ValueError: a string of another form, or a duration that is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"a duration is a number of seconds or a string like '1 hour', got {value!r}")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        unit = UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None or match.group(2).lower() in _CALENDAR_UNITS:
            raise ValueError(
                f"invalid duration {value!r}: expected '<n> <unit>' or '<n><unit>' with a unit among "
                "second (s), minute (m), hour (h), day (d), e.g. '1 hour' or '10m'"
            )
        value = int(match.group(1)) * unit
    if not value > 0:
        raise ValueError(f"a duration must be > 0 seconds, got {value!r}")
    return value


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

    ``"10/second;1000/day"`` (or ``,`` / ``|`` between them), ``["10/second", "1000/day"]``, ``Plan(...)`` and
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
            parts = _SEPARATORS.split(item)
            if len(parts) > 1 and not all(part.strip() for part in parts):
                raise ValueError(
                    f"invalid rate {item!r}: an empty limit between separators; expected {RATE_FORMAT}"
                )
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
