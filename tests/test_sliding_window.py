"""Sliding window counter: its documented bounds and weighted estimate (the contract is shared)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms.sliding_window import SlidingWindowAlgorithm, transition
from tests.histories import admitted, replay
from tests.strategies import call_sequences, plans, starts_us

#: Float slack for comparing the estimate (doubles) with exact fractions.
SLACK = Fraction(1, 10**9)


def exact_estimate(state: tuple[int, int, int], now: int, period: int) -> Fraction:
    """The weighted count of a state at ``now``, in exact arithmetic."""
    start, prev, cur = state
    return prev * Fraction(start + period - now, period) + cur


@given(st.data())
def test_admissions_respect_the_documented_bounds(data: st.DataObject) -> None:
    """Aligned window <= limit; estimate after admission <= limit; span <= limit + prev*e/P <= 2*limit."""
    plan = data.draw(plans)
    period, limit = plan.period_us, plan.limit
    history = replay(transition, plan, data.draw(call_sequences(plan)))
    for now, _cost, step, _ in history:
        if step[0]:
            assert exact_estimate(step[4], now, period) <= limit + SLACK
    calls = admitted(history)
    per_window: dict[int, int] = {}
    for t, cost in calls:
        per_window[t // period] = per_window.get(t // period, 0) + cost
    assert max(per_window.values()) <= limit
    for end, _ in calls:
        # The span of one period ending with this call; it starts e µs into window A.
        begin = end - period + 1
        e = begin % period
        spent = sum(cost for t, cost in calls if begin <= t <= end)
        assert spent <= limit + per_window.get(begin // period, 0) * Fraction(e, period) + SLACK
        assert spent <= 2 * limit


@given(plans, starts_us)
def test_no_wait_outlasts_the_next_window(plan: Plan, now: int) -> None:
    """The whole limit at once is forgotten by the end of the next window: no refused call waits longer."""
    window_end = now - now % plan.period_us + 2 * plan.period_us
    assert now + transition(None, now, plan, plan.limit)[2] <= window_end


def test_previous_window_weighs_in_proportion_to_its_overlap(clock: ManualClock) -> None:
    """10/minute used up in one window: 30 s into the next, half of it still counts."""
    clock.set(1_699_999_980_000_000)  # on a minute boundary
    algorithm = SlidingWindowAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 10, 60)
    assert algorithm.check("k", plan, cost=10).remaining == 0
    refused = algorithm.check("k", plan)
    # The next window admits one call once 10 * (60 - e) / 60 <= 9: e = 6 s.
    assert not refused.allowed and refused.retry_after == pytest.approx(66.0)
    assert refused.reset_after == pytest.approx(120.0)
    clock.advance(90)
    result = algorithm.check("k", plan)
    assert result.allowed and result.remaining == 4  # 10 * 0.5 + 1 used


def test_bursts_at_a_boundary_stay_under_twice_the_limit(clock: ManualClock) -> None:
    """A full burst just before a boundary leaves only a trickle just after it."""
    clock.set(1_699_999_980_000_000 + 59_000_000)  # 1 s before the boundary
    algorithm = SlidingWindowAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 60, 60)
    assert algorithm.check("k", plan, cost=60).allowed
    clock.advance(2)  # 1 s into the next window: 59 of the 60 still weigh, room for one
    assert algorithm.peek("k", plan).allowed
    assert not algorithm.peek("k", plan, cost=2).allowed
    clock.advance(9)  # 10 s in: 50 weigh
    assert algorithm.peek("k", plan, cost=10).allowed
    assert not algorithm.peek("k", plan, cost=11).allowed
