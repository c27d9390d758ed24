"""Rate strings: ``"<limit>/<unit>"`` such as ``"10/minute"`` or ``"5/s"``."""

from __future__ import annotations

import re

from limify.core.plans import MONTH_SECONDS, Plan

__all__ = ["parse_rate", "UNITS", "RATE_FORMAT"]

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

_RATE = re.compile(r"\s*(\d{1,13})\s*/\s*([A-Za-z]{1,7})\s*")


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
