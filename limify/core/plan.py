"""A plan: at most ``limit`` units of cost per period, validated on construction.

Its own module so that :mod:`limify.core.rate` (which parses rate strings into
plans) and :mod:`limify.core.plans` (the registry, which parses rate strings
given to it) both build on it without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Plan", "MAX_LIMIT", "MAX_PERIOD_SECONDS", "CALENDARS", "MONTH_SECONDS"]

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
