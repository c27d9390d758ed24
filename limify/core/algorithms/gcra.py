"""GCRA: the generic cell rate algorithm, a whole limit kept in one timestamp.

Theory of operation
-------------------
Calls are spaced by the emission interval ``T = period / limit`` microseconds.
State per key: the theoretical arrival time ``tat``, the moment the key would be
back to idle if every admitted unit had been spaced exactly ``T`` apart. A key
never seen (or whose ``tat`` has passed) has ``tat = now``.

A call of cost ``c`` at ``now`` would move the arrival time to
``new_tat = max(tat, now) + c * T``. It is admitted when
``new_tat - now <= period``, i.e. the key may run ahead of the steady rate by
at most one period: the burst tolerance is ``period - T``, so a fresh key can
spend ``limit`` at once and then one unit every ``T``. A refused call changes
nothing.

* ``remaining``: the largest ``n`` a call could spend right now, about
  ``floor((period - (max(tat, now) - now)) / T)``;
* ``retry_us = ceil(new_tat) - period - now``: at that instant the same call
  computes the same ``new_tat`` and fits;
* ``reset_us`` (and the TTL) is ``ceil(tat) - now``: afterwards the state
  means the same as no state;
* a refund moves ``tat`` back by ``c * T``, never before ``now``.

Invariants:

* over any window of ``w`` microseconds the admitted cost is at most
  ``limit + w / T`` (the burst plus what the steady rate allows);
* a clock that steps backwards gains nothing: ``tat`` never moves back except
  by a refund.

Precision. ``tat`` is an absolute time near ``1.7e15`` µs, where a double only
resolves a quarter of a microsecond, while ``T`` may be any fraction
(``3/2s`` gives ``666666.67``). Rounding each new ``tat`` to the double grid
would drift by up to 1/8 µs per call and make a burst of ``limit`` fail (or
overshoot at high rates). So ``tat`` is held as whole microseconds plus a
fraction in ``[0, 1)``: the whole part is an exact integer, and sums of ``T``
are only ever added to the small fraction. ``c * T`` is capped at ``period``:
``c <= limit`` makes the exact value at most ``period``, and the cap stops a
rounded-up product from refusing a fresh key's full burst. Python floats and
Lua doubles run the same operations in the same order, so both agree bit for
bit. On Redis the state is the string ``"<whole>+<fraction>"`` (one number:
their sum).
"""

from __future__ import annotations

import math

from limify.core.algorithms.base import AlgorithmSpec, AsyncAlgorithm, Step, SyncAlgorithm
from limify.core.plans import Plan

__all__ = ["transition", "refund", "GCRA", "GCRAAlgorithm", "AsyncGCRAAlgorithm"]

#: ``(whole_us, fraction)``: the theoretical arrival time ``whole_us + fraction``.
State = tuple[int, float]


def _shift(whole: int, fraction: float, amount: float) -> State:
    """``(whole + fraction) + amount``, renormalised so the fraction is in [0, 1)."""
    x = fraction + amount
    carry = math.floor(x)
    fraction = x - carry
    if fraction >= 1.0:  # x a hair below an integer: x - floor(x) rounded up to 1
        carry += 1
        fraction = 0.0
    return whole + carry, fraction


def _ceil_ahead(whole: int, fraction: float, now: int) -> int:
    """``ceil(tat) - now`` in whole microseconds."""
    return whole + (1 if fraction > 0.0 else 0) - now


def _base(state: State | None, now: int) -> State:
    """``max(tat, now)``."""
    if state is None or state[0] < now:
        return now, 0.0
    return state


def _increment(cost: int, interval: float, period: int) -> float:
    return min(period, cost * interval)


def _fits(base: State, now: int, cost: int, interval: float, period: int) -> bool:
    whole, fraction = _shift(base[0], base[1], _increment(cost, interval, period))
    return _ceil_ahead(whole, fraction, now) <= period


def _room(base: State, now: int, limit: int, interval: float, period: int) -> int:
    """The largest cost (0 to ``limit``) that fits on top of ``base`` at ``now``."""
    ahead = (base[0] - now) + base[1]
    guess = min(limit, max(0, math.floor((period - ahead) / interval)))
    # The estimate may be one off either way after rounding: settle it with the
    # very test a call would run.
    while guess < limit and _fits(base, now, guess + 1, interval, period):
        guess += 1
    while guess > 0 and not _fits(base, now, guess, interval, period):
        guess -= 1
    return guess


def transition(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> Step:
    """The GCRA transition (twin of ``gcra.lua``)."""
    limit = plan.limit
    period = plan.period_us
    interval = period / limit
    base = _base(state, now)
    whole, fraction = _shift(base[0], base[1], _increment(cost, interval, period))
    reach = _ceil_ahead(whole, fraction, now)
    if reach <= period:
        left = _room((whole, fraction), now, limit, interval, period)
        return True, left, reach, 0, (whole, fraction), reach
    reset = _ceil_ahead(base[0], base[1], now)
    return False, _room(base, now, limit, interval, period), reset, reach - period, state, reset


def refund(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> tuple[State | None, int]:
    """Move the arrival time back by ``cost * T``, not before ``now`` (twin of ``refund`` in the Lua)."""
    if state is None:
        return None, 0
    period = plan.period_us
    interval = period / plan.limit
    whole, fraction = _shift(state[0], state[1], -_increment(cost, interval, period))
    ttl = _ceil_ahead(whole, fraction, now)
    if ttl <= 0:
        return None, 0  # back at or before now: the same as a fresh key
    return (whole, fraction), ttl


GCRA = AlgorithmSpec("gcra", transition, refund, "gcra.lua")


class GCRAAlgorithm(SyncAlgorithm):
    """GCRA on a synchronous storage adapter (memory or Redis)."""

    spec = GCRA


class AsyncGCRAAlgorithm(AsyncAlgorithm):
    """GCRA on an asynchronous storage adapter (memory or redis.asyncio)."""

    spec = GCRA
