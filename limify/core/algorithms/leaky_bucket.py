"""Leaky bucket (as a meter): calls pour water in, it drains at ``limit / period``.

Theory of operation
-------------------
State per key: ``(level, last_us)``, the water level as a float and the time it
was last brought up to date. A key never seen holds an empty bucket.

At ``now`` the level is ``max(0, level - (now - last) * rate)`` with
``rate = limit / period_us`` units per microsecond: the bucket drains
continuously and never below empty. A call of cost ``c`` pours ``c`` in; it is
admitted when the bucket does not overflow, i.e. ``level <= limit - c``
(capacity ``limit``), and then leaves ``level + c`` stamped at ``now``. A
refused call changes nothing.

This is the mirror image of the token bucket (``tokens = limit - level``), kept
as its own code: the meter view is the one users of "leaky bucket" reason in,
and it stays exact on its own terms.

Invariants:

* over any window of length ``w`` the admitted cost is at most
  ``limit + w * rate`` (a full bucket plus what drained meanwhile);
* ``remaining`` is the largest cost a call could pour in right now;
* ``retry_us`` is exact: the same call finds room at ``now + retry_us`` and not
  a microsecond earlier (the wait is settled with the very level function the
  next call uses; float rounding may put it a microsecond past the ideal);
* ``reset_us`` (and the TTL) is when the bucket is empty again, after which the
  state means the same as no state;
* a clock that steps backwards drains nothing and never moves ``last`` back;
* a refund takes ``c`` back out, never below empty.

The arithmetic is written so that Lua doubles and Python floats agree bit for
bit: the same operations in the same order, on integers below 2**53. On Redis
the state is the string ``"<level>:<last_us>"``.
"""

from __future__ import annotations

import math

from limify.core.algorithms.base import AlgorithmSpec, StepTuple
from limify.core.algorithms.codecs import NumbersCodec
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.plan import Plan

__all__ = ["transition", "refund", "LEAKY_BUCKET", "LeakyBucketAlgorithm", "AsyncLeakyBucketAlgorithm"]

#: ``(level, last_us)``
State = tuple[float, int]


def _level(level: float, last: int, at: int, rate: float) -> float:
    if at <= last:
        return level
    return max(0.0, level - (at - last) * rate)


def _drain_wait(level: float, last: int, now: int, target: int, rate: float) -> int:
    """Microseconds from ``now`` until the level is at most ``target`` (>= 0)."""
    if _level(level, last, now, rate) <= target:
        return 0
    # Draining starts at `last` when a skewed clock puts `now` before it.
    start = max(now, last)
    wait = (start - now) + math.ceil((_level(level, last, start, rate) - target) / rate)
    step = 1
    # Float rounding may leave the level a hair high at now + wait: lengthen until
    # the very expression the next call evaluates says yes.
    while _level(level, last, now + wait, rate) > target:
        wait += step
        step *= 2
    # ... or a hair low, making the estimate long: settle on the first microsecond that works.
    while wait > 1 and _level(level, last, now + wait - 1, rate) <= target:
        wait -= 1
    return wait


def _room(current: float, limit: int) -> int:
    """The largest cost (0 to ``limit``) that fits on top of ``current``."""
    guess = min(limit, max(0, math.floor(limit - current)))
    while guess < limit and current <= limit - (guess + 1):
        guess += 1
    while guess > 0 and current > limit - guess:
        guess -= 1
    return guess


def transition(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> StepTuple:
    """The leaky bucket transition (twin of ``leaky_bucket.lua``)."""
    limit = plan.limit
    rate = limit / plan.period_us
    if state is None:
        level, last = 0.0, now
    else:
        level, last = state
    current = _level(level, last, now, rate)
    if current <= limit - cost:
        filled = current + cost
        stamp = max(last, now)
        reset = _drain_wait(filled, stamp, now, 0, rate)
        return (True, _room(filled, limit), reset, 0, (filled, stamp), reset)
    retry = _drain_wait(level, last, now, limit - cost, rate)
    reset = _drain_wait(level, last, now, 0, rate)
    return (False, _room(current, limit), reset, retry, state, reset)


def refund(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> tuple[State | None, int]:
    """Take ``cost`` back out of the bucket, never below empty (twin of ``refund`` in the Lua)."""
    if state is None:
        return None, 0  # an empty bucket has nothing to give back
    rate = plan.limit / plan.period_us
    level, last = state
    stamp = max(last, now)
    lowered = max(0.0, _level(level, last, stamp, rate) - cost)
    return (lowered, stamp), _drain_wait(lowered, stamp, now, 0, rate)


LEAKY_BUCKET = AlgorithmSpec("leaky_bucket", transition, refund, "leaky_bucket.lua", NumbersCodec("%.17g:%d"))


class LeakyBucketAlgorithm(SyncAlgorithm):
    """Leaky bucket (meter) on a synchronous storage adapter (memory or Redis)."""

    spec = LEAKY_BUCKET


class AsyncLeakyBucketAlgorithm(AsyncAlgorithm):
    """Leaky bucket (meter) on an asynchronous storage adapter (memory or redis.asyncio)."""

    spec = LEAKY_BUCKET
