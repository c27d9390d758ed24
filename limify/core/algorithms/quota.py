"""Quota: a fixed allowance per calendar window in UTC (per day, per hour, per month).

Theory of operation
-------------------
A quota is a fixed window whose boundaries are calendar boundaries in UTC:

* a plain plan's windows are aligned to multiples of its period from the Unix
  epoch, so ``"1000/day"`` resets at 00:00 UTC and ``"50/hour"`` on the hour
  (exactly :mod:`~limify.core.algorithms.fixed_window`'s windows);
* a ``"<n>/month"`` plan (``Plan.calendar == "month"``) gets calendar months:
  each window runs from 00:00 UTC on the 1st to 00:00 UTC on the 1st of the
  next month, 28 to 31 days long (its 30-day ``period_us`` is ignored).

State, admission, ``remaining``, ``reset``/``retry`` (both the time left to the
window's end), TTL, clock skew and refunds are the fixed window's: see
:func:`~limify.core.algorithms.fixed_window.window_step`. Within any calendar
window the admitted cost (net of refunds) is at most ``limit``.

Month boundaries come from integer day arithmetic, written identically in
Python and Lua (Redis scripts have no ``os.date``). Days are counted from
1970-01-01 in the proleptic Gregorian calendar. Shifting the year to start on
March 1st puts the leap day last, so the day of the year follows from the month
alone (``(153 * m + 2) // 5`` days before month ``m`` counted from March), and
400-year eras of 146097 days make the leap rule (every 4th year, not every
100th, yes every 400th) a matter of floor divisions. All values stay far below
2**53, and Lua's ``math.floor(a / b)`` is exact floor division there.

The Lua twin receives ``(limit, period_us, 1 if month else 0)`` per limit
(:attr:`AlgorithmSpec.script_args`).
"""

from __future__ import annotations

from limify.core.algorithms.base import AlgorithmSpec, StepTuple
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.algorithms.fixed_window import WINDOW_CODEC, State, epoch_window, window_refund, window_step
from limify.core.plan import Plan

__all__ = [
    "transition",
    "refund",
    "days_from_civil",
    "civil_from_days",
    "month_window",
    "QUOTA",
    "QuotaAlgorithm",
    "AsyncQuotaAlgorithm",
]

DAY_US = 86_400_000_000
#: Days from 0000-03-01 (the start of a March-based era) to 1970-01-01.
_EPOCH_SHIFT = 719_468
#: Days in 400 Gregorian years.
_ERA_DAYS = 146_097


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the proleptic Gregorian date ``year-month-day``."""
    march_year = year - 1 if month <= 2 else year
    era = march_year // 400
    year_of_era = march_year - era * 400  # 0 .. 399
    month_from_march = month - 3 if month > 2 else month + 9  # March = 0 .. February = 11
    day_of_year = (153 * month_from_march + 2) // 5 + day - 1  # 0 .. 365
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * _ERA_DAYS + day_of_era - _EPOCH_SHIFT


def civil_from_days(days: int) -> tuple[int, int, int]:
    """The ``(year, month, day)`` that is ``days`` after 1970-01-01 (inverse of the above)."""
    shifted = days + _EPOCH_SHIFT
    era = shifted // _ERA_DAYS
    day_of_era = shifted - era * _ERA_DAYS  # 0 .. 146096
    # Remove the leap days before day_of_era (one per 4 years, less one per 100,
    # plus one per 400) to find the year of the era.
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // (_ERA_DAYS - 1)
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_from_march = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_from_march + 2) // 5 + 1
    month = month_from_march + 3 if month_from_march < 10 else month_from_march - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def month_window(at: int) -> tuple[int, int]:
    """The UTC calendar month holding ``at``: ``(start_us, end_us)``."""
    days = at // DAY_US
    year, month, day = civil_from_days(days)
    first = days - (day - 1)
    following = days_from_civil(year + month // 12, month % 12 + 1, 1)
    return first * DAY_US, following * DAY_US


def calendar_window(at: int, plan: Plan) -> tuple[int, int]:
    """The quota window holding ``at``: a calendar month or an epoch-aligned period."""
    if plan.calendar == "month":
        return month_window(at)
    return epoch_window(at, plan)


def transition(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> StepTuple:
    """The quota transition (twin of ``quota.lua``)."""
    return window_step(state, now, plan, cost, calendar_window)


def refund(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> tuple[State | None, int]:
    """Give ``cost`` back to the current window (twin of ``refund`` in the Lua)."""
    return window_refund(state, now, plan, cost, calendar_window, token)


#: The shortest calendar month (a February), in microseconds.
_SHORTEST_MONTH_US = 28 * 86_400_000_000


def calendar_bound(plan: Plan, span_us: int) -> float:
    """``limit`` per window the span touches; a span touches at most ``span // shortest + 2``.

    For month plans the shortest window is a February (28 days): Jan 31, Feb 15 and
    Mar 1 lie in three windows 29 days apart.
    """
    shortest = _SHORTEST_MONTH_US if plan.calendar == "month" else plan.period_us
    return plan.limit * (span_us // shortest + 2)


def _script_args(plan: Plan) -> tuple[int, ...]:
    return plan.limit, plan.period_us, 1 if plan.calendar == "month" else 0


QUOTA = AlgorithmSpec(
    "quota",
    transition,
    refund,
    ("quota.lua", "window_counter.lua"),
    WINDOW_CODEC,
    script_args=_script_args,
    admitted_bound=calendar_bound,
)


class QuotaAlgorithm(SyncAlgorithm):
    """Calendar quota on a synchronous storage adapter (memory or Redis)."""

    spec = QUOTA


class AsyncQuotaAlgorithm(AsyncAlgorithm):
    """Calendar quota on an asynchronous storage adapter (memory or redis.asyncio)."""

    spec = QUOTA
