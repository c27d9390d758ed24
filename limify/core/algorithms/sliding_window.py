"""Sliding window: the weighted counts of the current and previous fixed windows.

Theory of operation
-------------------
Time is cut into windows of one period aligned to multiples of the period, as in
:mod:`~limify.core.algorithms.fixed_window`. State per key, in one value:
``(window_start_us, prev, cur)``: the cost admitted in the window starting at
``window_start_us`` (``cur``) and in the one before it (``prev``). Brought
forward to the window ``[start, start + period)`` holding ``now``, a state one
window old becomes ``(start, cur, 0)`` and an older one ``(start, 0, 0)``.

With ``elapsed = now - start``, the traffic of the last period is estimated by
assuming the previous window's calls were spread evenly over it::

    estimate(n) = prev * ((period - elapsed) / period) + n

A call of cost ``c`` is admitted when ``estimate(cur + c) <= limit`` (the
estimate it would leave behind); it then stores ``cur + c``. A refused call
changes nothing. ``remaining`` is the largest ``r`` with
``estimate(cur + r) <= limit``.

This is an approximation of a true sliding log: it keeps two counters instead
of one timestamp per call, and trades exactness for O(1) state. What it
guarantees (and tests/test_sliding_window.py proves over random traffic):

* after every admission the estimate is at most ``limit``;
* within any aligned window the admitted cost is at most ``limit`` (the
  estimate counts ``cur`` in full);
* over any span of one period reaching ``e`` microseconds into a window whose
  predecessor admitted ``prev``, the admitted cost is at most
  ``limit + prev * e / period``: at most ``2 * limit`` in the worst case, when a
  full window's worth arrives at the very end of one window and the estimate
  lets almost another ``limit`` through late in the next. Evenly spread traffic
  sees the estimate track the true count of the last period closely.

Waits: with no admissions the estimate never grows as time passes (the
previous window's weight shrinks; at a boundary ``cur`` moves to ``prev`` with
weight 1, so the estimate is continuous; two windows later it is 0). So the
first instant a call is admitted is well defined, and ``retry_us`` is exactly
that instant minus ``now``, found by bisection on the very predicate the next
call evaluates (a closed-form guess only shortens the search). It is at most
the end of the next window, where the estimate is 0. ``reset_us`` (and the
TTL) is when the state stops mattering: the end of the next window while
``cur > 0``, else the end of the current one while ``prev > 0``.

A clock that steps backwards never rewinds the state: a state stamped with a
later window than ``now``'s is evaluated at that window's start, and waits are
measured from the caller's ``now``. A refund takes ``c`` off the count of the
window its call was admitted in, never below 0: ``cur``, or ``prev`` when the
call's token (:func:`~limify.core.algorithms.base.refund_token`) dates it in the
previous window; cost admitted two or more windows ago no longer weighs and is
not given back. A refund with no such token takes from ``cur``.

Floats are computed in the same order in Python and Lua (the weight as an
exact int over an exact int, then times ``prev``, then plus an int), so both
agree bit for bit.
"""

from __future__ import annotations

import math

from limify.core.algorithms.base import AlgorithmSpec, StepTuple, admission_of, window_bound
from limify.core.algorithms.codecs import NumbersCodec
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.plan import Plan

__all__ = ["transition", "refund", "SLIDING_WINDOW", "SlidingWindowAlgorithm", "AsyncSlidingWindowAlgorithm"]

#: ``(window_start_us, prev, cur)``
State = tuple[int, int, int]
_floor = math.floor


def _advance(state: State | None, at: int, period: int) -> State:
    """The state brought forward to the window holding ``at`` (``at`` >= its stamp)."""
    start = at - at % period
    if state is None:
        return start, 0, 0
    stamp, prev, cur = state
    if stamp == start:
        return state
    if stamp == start - period:
        return start, cur, 0
    return start, 0, 0


def _weighted(prev: int, elapsed: int, period: int) -> float:
    """The previous window's share of the last period."""
    return prev * ((period - elapsed) / period)


def _admits(state: State | None, at: int, period: int, limit: int, cost: int) -> bool:
    """Whether a call of ``cost`` at ``at`` is admitted (the one predicate every wait uses)."""
    start, prev, cur = _advance(state, at, period)
    return _weighted(prev, at - start, period) + (cur + cost) <= limit


def _room(prev: int, cur: int, elapsed: int, period: int, limit: int) -> int:
    """The largest cost ``r`` with ``weighted + (cur + r) <= limit``, or 0."""
    weighted = prev * ((period - elapsed) / period)  # _weighted, written out
    total = _floor(limit - weighted)
    # One float subtraction may round either way: settle on the exact predicate.
    while total > 0 and weighted + total > limit:
        total -= 1
    while weighted + (total + 1) <= limit:
        total += 1
    total -= cur
    return total if total > 0 else 0


def _first_admission(state: State | None, at: int, plan: Plan, cost: int) -> int:
    """The first instant after ``at`` (which refuses) at which the call is admitted."""
    limit, period = plan.limit, plan.period_us
    if cost > limit:  # never admitted; shells reject such costs before they get here
        return at + period
    start, prev, cur = _advance(state, at, period)
    lo, hi = at, start + 2 * period  # refused at lo; the estimate is 0 at hi
    # Closed-form guess: the previous weight decays enough in this window, or
    # only cur's weight can, in the next one.
    if cur + cost <= limit:
        guess = start + math.ceil(period - (limit - cost - cur) / prev * period)
    else:
        guess = start + period + math.ceil(period - (limit - cost) / cur * period)
    guess = min(max(guess, lo + 1), hi)
    if _admits(state, guess, period, limit, cost):
        hi = guess
        if guess - 1 > lo and not _admits(state, guess - 1, period, limit, cost):
            lo = guess - 1
    else:
        lo = guess
        if guess + 1 < hi and _admits(state, guess + 1, period, limit, cost):
            hi = guess + 1
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2  # not (lo + hi) // 2: that sum may pass 2**53 in Lua
        if _admits(state, mid, period, limit, cost):
            hi = mid
        else:
            lo = mid
    return hi


def _reset(start: int, prev: int, cur: int, period: int, now: int) -> int:
    """Microseconds from ``now`` until the state stops mattering (0 when it already has)."""
    if cur > 0:
        return start + 2 * period - now
    if prev > 0:
        return start + period - now
    return 0


def transition(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> StepTuple:
    """The sliding window transition (twin of ``sliding_window.lua``)."""
    limit, period = plan.limit, plan.period_us
    if state is None:
        at = now
        start, prev, cur = at - at % period, 0, 0
    else:
        at = now if now >= state[0] else state[0]
        start, prev, cur = _advance(state, at, period)
    elapsed = at - start
    if prev * ((period - elapsed) / period) + (cur + cost) <= limit:  # _weighted, written out
        cur += cost
        reset = start + 2 * period - now
        return (True, _room(prev, cur, elapsed, period, limit), reset, 0, (start, prev, cur), reset)
    retry = _first_admission(state, at, plan, cost) - now
    reset = _reset(start, prev, cur, period, now)
    return (False, _room(prev, cur, elapsed, period, limit), reset, retry, state, reset)


def refund(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> tuple[State | None, int]:
    """Take ``cost`` off the count of the window the call was admitted in (twin of ``refund`` in the Lua).

    That is the current window, unless the token says the call was counted in
    the previous one (whose count still weighs) or earlier (nothing to give back).
    """
    if state is None:
        return None, 0
    period = plan.period_us
    start, prev, cur = _advance(state, max(now, state[0]), period)
    admitted, _ = admission_of(token)
    counted_in = start if admitted is None else admitted - admitted % period
    if counted_in == start:
        cur = max(0, cur - cost)
    elif counted_in == start - period:
        prev = max(0, prev - cost)
    ttl = _reset(start, prev, cur, period, now)
    return ((start, prev, cur) if ttl > 0 else None), ttl


SLIDING_WINDOW = AlgorithmSpec(
    "sliding_window",
    transition,
    refund,
    "sliding_window.lua",
    NumbersCodec("%d:%d:%d"),
    admitted_bound=window_bound,
)


class SlidingWindowAlgorithm(SyncAlgorithm):
    """Sliding window counter on a synchronous storage adapter (memory or Redis)."""

    spec = SLIDING_WINDOW


class AsyncSlidingWindowAlgorithm(AsyncAlgorithm):
    """Sliding window counter on an asynchronous storage adapter (memory or redis.asyncio)."""

    spec = SLIDING_WINDOW
