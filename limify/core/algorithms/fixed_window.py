"""Fixed window: at most ``limit`` per window, windows aligned to multiples of the period.

Theory of operation
-------------------
Time is cut into windows ``[k * period, (k + 1) * period)`` counted from the Unix
epoch, so every key shares the same boundaries (a ``"100/hour"`` window opens
on the hour, UTC). State per key: ``(window_start_us, count)``, the cost admitted
in the window that starts at ``window_start_us``. A key never seen, or whose
state belongs to an earlier window, has a count of 0.

A call of cost ``c`` in the window ``[start, end)`` is admitted when
``count + c <= limit``; it then stores ``(start, count + c)``. A refused call
changes nothing. ``remaining = limit - count``; ``reset`` and ``retry`` are both
``end - now``: the next window opens with a count of 0, so a refused call
repeated at ``end`` is admitted (``c <= limit``), while at ``end - 1`` it is
still in the full window. That makes ``retry`` exact and the shortest possible.

Invariants:

* within any aligned window the admitted cost (net of refunds) is at most
  ``limit``; over an arbitrary span of one period it is at most ``2 * limit``
  (the tail of one window and the head of the next: the well-known burst at
  window boundaries);
* the state, its TTL and ``reset`` end together at the window's end, after
  which the state is the same as no state at all;
* a clock that steps backwards (skewed app servers) never reopens a window:
  a state stamped with a later window than ``now``'s is still that window's
  count, and waits are measured from the caller's ``now`` to its end;
* a refund takes ``c`` off the current window's count, never below 0; a refund
  arriving after its window closed has nothing to give back, and neither has a
  refund naming a call admitted in an earlier window (its token says when,
  see :func:`~limify.core.algorithms.base.refund_token`): that call is not in
  this window's count, so giving its cost back here would let the window hold
  more than ``limit``.

Everything is integer arithmetic on values below 2**53, so Lua doubles and
Python ints agree exactly. ``window_step`` and ``window_refund`` take the
window as a function so that :mod:`limify.core.algorithms.quota` reuses them
with calendar months.
"""

from __future__ import annotations

from collections.abc import Callable

from limify.core.algorithms.base import AlgorithmSpec, StepTuple, admission_of, window_bound
from limify.core.algorithms.codecs import NumbersCodec
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.plan import Plan

__all__ = [
    "transition",
    "refund",
    "epoch_window",
    "window_step",
    "window_refund",
    "FIXED_WINDOW",
    "FixedWindowAlgorithm",
    "AsyncFixedWindowAlgorithm",
]

#: ``(window_start_us, count)``
State = tuple[int, int]
#: ``window(at_us, plan) -> (start_us, end_us)``: the window holding ``at_us``.
Window = Callable[[int, Plan], tuple[int, int]]


def epoch_window(at: int, plan: Plan) -> tuple[int, int]:
    """The window of ``plan.period_us`` holding ``at``, aligned to multiples of the period."""
    period = plan.period_us
    start = at - at % period
    return start, start + period


def window_step(state: State | None, now: int, plan: Plan, cost: int, window: Window) -> StepTuple:
    """The counter transition for any window function (see the module docs)."""
    # A state stamped in a later window than now's (a skewed clock) still counts.
    at = now if state is None else max(now, state[0])
    start, end = window(at, plan)
    count = state[1] if state is not None and state[0] == start else 0
    limit = plan.limit
    left = end - now
    if count + cost <= limit:
        count += cost
        return (True, limit - count, left, 0, (start, count), left)
    return (False, limit - count, left, left, state, left)


def window_refund(
    state: State | None, now: int, plan: Plan, cost: int, window: Window, token: str = ""
) -> tuple[State | None, int]:
    """Take ``cost`` off the current window's count, never below 0.

    With a :func:`~limify.core.algorithms.base.refund_token`, only a call admitted
    in the current window gets its cost back: one counted in an earlier window
    was never part of this window's count.
    """
    if state is None:
        return None, 0
    start, end = window(max(now, state[0]), plan)
    if state[0] != start:
        return None, 0  # the state's window closed: an empty window is no state at all
    admitted, _ = admission_of(token)
    if admitted is not None and window(admitted, plan)[0] != start:
        return state, end - now
    count = state[1] - cost
    if count <= 0:
        return None, 0
    return (start, count), end - now


def transition(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> StepTuple:
    """The fixed window transition (twin of ``fixed_window.lua``)."""
    return window_step(state, now, plan, cost, epoch_window)


def refund(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> tuple[State | None, int]:
    """Give ``cost`` back to the current window (twin of ``refund`` in the Lua)."""
    return window_refund(state, now, plan, cost, epoch_window, token)


#: The window counter's state text, shared with quota (``window_counter.lua``).
WINDOW_CODEC = NumbersCodec("%d:%d")

FIXED_WINDOW = AlgorithmSpec(
    "fixed_window",
    transition,
    refund,
    ("fixed_window.lua", "window_counter.lua"),
    WINDOW_CODEC,
    admitted_bound=window_bound,
)


class FixedWindowAlgorithm(SyncAlgorithm):
    """Fixed window on a synchronous storage adapter (memory or Redis)."""

    spec = FIXED_WINDOW


class AsyncFixedWindowAlgorithm(AsyncAlgorithm):
    """Fixed window on an asynchronous storage adapter (memory or redis.asyncio)."""

    spec = FIXED_WINDOW
