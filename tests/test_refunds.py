"""Refunds give back only what their own call spent, so no window ever holds more than its limit.

A call decorated with ``refund_on`` that fails gives its cost back. The refund
names its call (the token it was admitted with, and the instant it was admitted
at), so the sliding log removes that call's own entry, and window counters give
the cost back only to the window that counted it. Each scenario runs in memory
(the Python transitions) and on a real redis-server (the Lua twins).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import ManualClock, Plan, RateLimitExceeded, rate_limit
from limify.core.algorithms.base import refund_token
from limify.core.algorithms.fixed_window import FIXED_WINDOW
from limify.core.algorithms.sliding_log import SLIDING_LOG
from limify.core.algorithms.sliding_window import SLIDING_WINDOW

START = 1_800_000_000_000_000  # a multiple of 60 s: windows of one minute open here


class UpstreamDown(Exception):
    """The guarded call failed in a way that should not spend quota."""


def guarded(storage: Any, algorithm: str) -> Callable[..., str]:
    """A ``2/minute`` function whose body runs the action it is given."""

    @rate_limit("2/minute", storage=storage, algorithm=algorithm, name=f"refunds-{algorithm}",
                refund_on=UpstreamDown)  # fmt: skip
    def call(action: Callable[[], None] | None = None) -> str:
        if action is not None:
            action()
        return "ok"

    return call


def admitted(call: Callable[..., str]) -> bool:
    """Whether one call of ``call`` is admitted now."""
    try:
        call()
    except RateLimitExceeded:
        return False
    return True


def test_sliding_log_refund_removes_the_refunded_calls_own_entry(
    sync_storage: Any, clock: ManualClock
) -> None:
    """A at 0 s, B at 30 s, A refunded at 31 s, C at 31 s: D at 60 s is refused (B and C are live)."""
    clock.set(START)
    call = guarded(sync_storage, "sliding_log")

    def a_fails_after_b_ran() -> None:
        clock.advance(30)
        assert admitted(call)  # B, at 30 s, while A is still running
        clock.advance(1)
        raise UpstreamDown

    with pytest.raises(UpstreamDown):
        call(a_fails_after_b_ran)  # A: admitted at 0 s, refunded at 31 s
    assert admitted(call)  # C at 31 s takes A's place
    clock.set(START + 60_000_000)
    assert not admitted(call)  # D: B (30 s) and C (31 s) still lie in the last 60 s
    clock.set(START + 90_000_001)
    assert admitted(call)  # B has aged out


def test_fixed_window_refund_of_a_call_from_a_closed_window_gives_nothing(
    sync_storage: Any, clock: ManualClock
) -> None:
    """A counted in the window that closed cannot free a place in the next, already full, window."""
    clock.set(START + 59_000_000)
    call = guarded(sync_storage, "fixed_window")

    def a_fails_in_the_next_window() -> None:
        clock.set(START + 60_000_000)
        assert admitted(call) and admitted(call)  # C and D fill the new window
        clock.advance(1)
        raise UpstreamDown

    with pytest.raises(UpstreamDown):
        call(a_fails_in_the_next_window)  # A: admitted at 59 s, refunded at 61 s
    assert not admitted(call)  # the window of C and D stays full
    clock.set(START + 120_000_000)
    assert admitted(call)


def test_fixed_window_refund_in_the_same_window_gives_the_cost_back(
    sync_storage: Any, clock: ManualClock
) -> None:
    """A refund within the window that counted its call frees its place at once."""
    clock.set(START)
    call = guarded(sync_storage, "fixed_window")

    def fail() -> None:
        clock.advance(1)
        raise UpstreamDown

    assert admitted(call)
    with pytest.raises(UpstreamDown):
        call(fail)
    assert admitted(call)
    assert not admitted(call)


def test_sliding_window_refund_takes_from_the_window_that_counted_the_call(
    sync_storage: Any, clock: ManualClock
) -> None:
    """A call counted in the previous window is taken off that window's count, not the current one's."""
    clock.set(START + 59_000_000)
    call = guarded(sync_storage, "sliding_window")

    def fail_in_the_next_window() -> None:
        clock.set(START + 60_000_000)
        raise UpstreamDown

    assert admitted(call)  # B at 59 s
    with pytest.raises(UpstreamDown):
        call(fail_in_the_next_window)  # A at 59 s, refunded at 60 s: the previous window holds B alone
    # Right after the boundary the previous window (B, weight ~1) leaves room for one call.
    assert admitted(call)
    assert not admitted(call)


def kept_costs_within(kept: list[tuple[int, int]], start: int, end: int) -> int:
    """The cost of the calls kept (admitted, not refunded) stamped in ``[start, end)``."""
    return sum(cost for at, cost in kept if start <= at < end)


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 40_000_000), st.integers(1, 3), st.none() | st.integers(0, 8)),
        min_size=1,
        max_size=60,
    ),
    limit=st.integers(3, 6),
)
def test_no_window_ever_holds_more_than_the_limit_of_calls_kept(
    steps: list[tuple[int, int, int | None]], limit: int
) -> None:
    """Random admissions and refunds of earlier calls: the calls kept never exceed the limit in a window."""
    plan = Plan("p", limit, 60)
    period = plan.period_us
    for spec in (SLIDING_LOG, FIXED_WINDOW, SLIDING_WINDOW):
        now, state = START, None
        kept: dict[str, tuple[int, int]] = {}
        for number, (gap, cost, refund_back) in enumerate(steps):
            now += gap
            if refund_back is not None and kept:
                token = sorted(kept)[refund_back % len(kept)]
                at, spent = kept.pop(token)
                state, ttl = spec.refund(state, now, plan, spent, refund_token(at, token))
                state = state if ttl > 0 else None
                continue
            token = f"{number:04d}"
            step = spec.transition(state, now, plan, cost, token)
            if not step[0]:
                continue
            state = step[4]
            kept[token] = (now, cost)
            calls = list(kept.values())
            window_start = now - now % period
            assert kept_costs_within(calls, window_start, window_start + period) <= limit, spec.name
            if spec is SLIDING_LOG:
                assert kept_costs_within(calls, now - period + 1, now + 1) <= limit
