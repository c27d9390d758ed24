"""Token bucket: bursts up to ``limit``, refilled continuously at ``limit / period``.

Theory of operation
-------------------
State per key: ``(tokens, last_us)``, the bucket level as a float and the time it
was last brought up to date. A key never seen holds a full bucket.

At ``now`` the level is ``min(limit, tokens + (now - last) * rate)`` with
``rate = limit / period_us`` tokens per microsecond. A call of cost ``c`` is
admitted when the level is at least ``c``; it then leaves ``level - c`` tokens
stamped at ``now``. A refused call changes nothing.

Invariants:

* over any window of length ``period`` the admitted cost is at most
  ``limit`` plus what refilled inside the window;
* ``retry_us`` is exact: the same call at ``now + retry_us`` sees a level of at
  least ``c``, and one microsecond earlier it does not (the wait is settled on
  the very level function the next call evaluates, whatever the rounding);
* ``reset_us`` (and the TTL) is when the bucket is full again, after which the
  state is the same as no state at all;
* a clock that steps backwards (skewed app servers) refills nothing and never
  moves ``last`` back;
* a refund puts ``c`` tokens back, capped at ``limit``.

The arithmetic is written so that Lua doubles and Python floats agree bit for
bit: the same operations in the same order, on integers below 2**53.
"""

from __future__ import annotations

import math

from limify.core.algorithms.base import AlgorithmSpec, StepTuple
from limify.core.algorithms.codecs import NumbersCodec
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.plan import Plan

__all__ = ["transition", "refund", "TOKEN_BUCKET", "TokenBucketAlgorithm", "AsyncTokenBucketAlgorithm"]

State = tuple[float, int]
_ceil, _floor = math.ceil, math.floor


def _level(tokens: float, last: int, at: int, limit: int, rate: float) -> float:
    if at <= last:
        return tokens
    return min(limit, tokens + (at - last) * rate)


def _wait_until(tokens: float, last: int, now: int, need: int, limit: int, rate: float, period: int) -> int:
    """Microseconds from ``now`` until the level reaches ``need``.

    Written out for speed (every refusal computes two of these), and equal to
    searching for the first ``t`` with ``_level(tokens, last, t, ...) >= need``:
    with ``tokens <= limit`` and ``need <= limit``, that level reaches ``need``
    exactly when ``t > last`` and ``tokens + (t - last) * rate >= need`` (the cap
    at ``limit`` cannot decide it, and before ``last`` the level is ``tokens``).
    """
    if need > limit:  # never reachable; shells reject such costs before they get here
        return period
    if now > last:
        level = tokens + (now - last) * rate
        if level >= limit:
            level = limit
    else:
        level = tokens
    if level >= need:
        return 0
    # Refilling starts at `last` when a skewed clock puts `now` before it; the level
    # there is `tokens`, which is `level` then, as it is at `now` otherwise.
    at = (now if now > last else last) + _ceil((need - level) / rate)
    # Float rounding may put the first microsecond at which the very expression the
    # next call evaluates says yes one off either way: settle on it exactly.
    while at <= last or tokens + (at - last) * rate < need:
        at += 1
    while at > now and at - 1 > last and tokens + (at - 1 - last) * rate >= need:
        at -= 1
    return at - now


def transition(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> StepTuple:
    """The token bucket transition (twin of ``token_bucket.lua``)."""
    limit = plan.limit
    period = plan.period_us
    rate = limit / period
    if state is None:
        tokens, last = float(limit), now
    else:
        tokens, last = state
    # _level(tokens, last, now, ...) and, below, _wait_until(left, stamp, now, limit, ...),
    # written out: the same operations in the same order, without the calls (this is
    # the hot path of every admitted call).
    if now <= last:
        current = tokens
    else:
        current = tokens + (now - last) * rate
        if current >= limit:  # min(limit, ...), without the call
            current = limit
    if current >= cost:
        left = current - cost
        stamp = last if last > now else now
        if left >= limit:
            reset = 0
        else:
            reset = (stamp - now) + _ceil((limit - left) / rate)
            early = now + reset - 1  # refilling runs from stamp, so reset > stamp - now
            if left + (now + reset - stamp) * rate < limit or (
                early > stamp and left + (early - stamp) * rate >= limit
            ):  # rounding put the first full microsecond elsewhere: search for it
                reset = _wait_until(left, stamp, now, limit, limit, rate, period)
        return (True, _floor(left), reset, 0, (left, stamp), reset)
    retry = _wait_until(tokens, last, now, cost, limit, rate, period)
    reset = _wait_until(tokens, last, now, limit, limit, rate, period)
    return (False, _floor(current), reset, retry, state, reset)


def refund(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> tuple[State | None, int]:
    """Put ``cost`` tokens back, never above the capacity (twin of ``refund`` in the Lua)."""
    if state is None:
        return None, 0  # a full bucket has nothing to give back
    limit = plan.limit
    rate = limit / plan.period_us
    tokens, last = state
    stamp = max(last, now)
    level = min(limit, _level(tokens, last, stamp, limit, rate) + cost)
    return (level, stamp), _wait_until(level, stamp, now, limit, limit, rate, plan.period_us)


TOKEN_BUCKET = AlgorithmSpec("token_bucket", transition, refund, "token_bucket.lua", NumbersCodec("%.17g:%d"))


class TokenBucketAlgorithm(SyncAlgorithm):
    """Token bucket on a synchronous storage adapter (memory or Redis)."""

    spec = TOKEN_BUCKET


class AsyncTokenBucketAlgorithm(AsyncAlgorithm):
    """Token bucket on an asynchronous storage adapter (memory or redis.asyncio)."""

    spec = TOKEN_BUCKET
