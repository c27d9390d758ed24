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

* ``remaining = floor((period - (max(tat, now) - now)) / T)`` after the call:
  the largest cost a call could spend right now;
* ``retry_us = ceil(new_tat) - period - now``: at that instant the same call
  computes the same ``new_tat`` and fits, one microsecond earlier it does not;
* ``reset_us`` (and the TTL) is ``ceil(tat) - now``: afterwards the state
  means the same as no state;
* a refund moves ``tat`` back by ``c * T``, never before ``now``.

Invariants:

* over any window of ``w`` microseconds the admitted cost is at most
  ``limit + w / T`` (the burst plus what the steady rate allows);
* a clock that steps backwards gains nothing: ``tat`` only moves back by a
  refund.

Exact arithmetic. ``T`` is rarely a whole number of microseconds (``3/2s``
gives 666666.67) and ``tat`` sits near ``1.7e15`` µs, where a double resolves a
quarter of a microsecond; sums of a float ``T`` drift, and a sum that should be
exactly ``period`` lands a hair past it, so a fresh ``1001/month`` key would
lose the last unit of its burst. So nothing here is a float: with
``q, r = divmod(period, limit)``, ``T = q + r / limit`` exactly, and ``tat`` is
held as ``whole_us + k / limit`` with an integer ``0 <= k < limit``. Adding
``c * T`` is integer arithmetic (``c * r`` split by ``divmod`` into whole
microseconds and a new ``k``). Python's integers are exact; the Lua twin's
doubles are exact below 2**53 and it multiplies bit by bit when ``c * r``
would not fit. On Redis the state is the string ``"<whole>+<k>/<limit>"``
(one number, read as written). A state written under another limit (the plan
changed) is rounded up to its next whole microsecond.
"""

from __future__ import annotations

import math

from limify.core.algorithms.base import AlgorithmSpec, StepTuple
from limify.core.algorithms.codecs import NumbersCodec
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.plan import Plan

__all__ = ["transition", "refund", "GCRA", "GCRAAlgorithm", "AsyncGCRAAlgorithm"]

#: ``(whole_us, k, limit)``: the theoretical arrival time ``whole_us + k / limit``.
State = tuple[int, int, int]


def _arrival(state: State, limit: int) -> tuple[int, int]:
    """``(whole_us, k)`` of ``state`` in units of ``1 / limit`` µs."""
    whole, k, denominator = state
    if denominator != limit:
        return whole + (1 if k else 0), 0
    return whole, k


def _add(whole: int, k: int, cost: int, plan: Plan, sign: int = 1) -> tuple[int, int]:
    """``(whole + k / limit) + sign * cost * T``, normalised so that ``0 <= k < limit``."""
    limit = plan.limit
    q, r = divmod(plan.period_us, limit)
    carry, part = divmod(cost * r, limit)
    whole += sign * (cost * q + carry)
    k += sign * part
    if k >= limit:
        k -= limit
        whole += 1
    elif k < 0:
        k += limit
        whole -= 1
    return whole, k


def _ceil_ahead(whole: int, k: int, now: int) -> int:
    """``ceil(tat) - now`` in whole microseconds."""
    return whole + (1 if k else 0) - now


def _fits(whole: int, k: int, now: int, cost: int, plan: Plan) -> bool:
    return _ceil_ahead(*_add(whole, k, cost, plan), now) <= plan.period_us


def _room(whole: int, k: int, now: int, plan: Plan) -> int:
    """The largest cost (0 to ``limit``) that fits on top of ``whole + k / limit`` at ``now``."""
    limit = plan.limit
    period = plan.period_us
    ahead = (whole - now) + k / limit
    guess = min(limit, max(0, math.floor((period - ahead) * limit / period)))
    # The float estimate may be one off either way: the exact test settles it.
    while guess < limit and _fits(whole, k, now, guess + 1, plan):
        guess += 1
    while guess > 0 and not _fits(whole, k, now, guess, plan):
        guess -= 1
    return guess


def transition(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> StepTuple:
    """The GCRA transition (twin of ``gcra.lua``)."""
    limit = plan.limit
    period = plan.period_us
    base_whole, base_k = now, 0
    if state is not None:
        whole, k = _arrival(state, limit)
        if whole >= now:
            base_whole, base_k = whole, k
    new_whole, new_k = _add(base_whole, base_k, cost, plan)
    reach = _ceil_ahead(new_whole, new_k, now)
    if reach <= period:
        left = _room(new_whole, new_k, now, plan)
        return (True, left, reach, 0, (new_whole, new_k, limit), reach)
    reset = _ceil_ahead(base_whole, base_k, now)
    return (False, _room(base_whole, base_k, now, plan), reset, reach - period, state, reset)


def refund(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> tuple[State | None, int]:
    """Move the arrival time back by ``cost * T``, not before ``now`` (twin of ``refund`` in the Lua)."""
    if state is None:
        return None, 0
    whole, k = _add(*_arrival(state, plan.limit), cost, plan, -1)
    ttl = _ceil_ahead(whole, k, now)
    if ttl <= 0:
        return None, 0  # back at or before now: the same as a fresh key
    return (whole, k, plan.limit), ttl


GCRA = AlgorithmSpec("gcra", transition, refund, "gcra.lua", NumbersCodec("%d+%d/%d"))


class GCRAAlgorithm(SyncAlgorithm):
    """GCRA on a synchronous storage adapter (memory or Redis)."""

    spec = GCRA


class AsyncGCRAAlgorithm(AsyncAlgorithm):
    """GCRA on an asynchronous storage adapter (memory or redis.asyncio)."""

    spec = GCRA
