"""Sliding window counter: the documented bounds and exact waits, over random call sequences."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan, RateLimitExceeded, rate_limit
from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.sliding_window import (
    AsyncSlidingWindowAlgorithm,
    SlidingWindowAlgorithm,
    refund,
    transition,
)
from tests.histories import admitted, replay
from tests.strategies import call_sequences, plans

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


@given(st.data())
def test_retry_after_is_exact_and_shortest(data: st.DataObject) -> None:
    """A refused call is admitted at now + retry_after, refused a µs earlier, within the next window."""
    plan = data.draw(plans)
    period = plan.period_us
    for now, cost, step, state in replay(transition, plan, data.draw(call_sequences(plan))):
        allowed, _, _, retry, _, _ = step
        if allowed:
            assert retry == 0
            continue
        assert retry > 0
        assert transition(state, now + retry, plan, cost)[0]
        assert not transition(state, now + retry - 1, plan, cost)[0]
        assert now + retry <= now - now % period + 2 * period


@given(st.data())
def test_remaining_and_reset_match_what_the_next_call_sees(data: st.DataObject) -> None:
    """`remaining` can be spent right away (not one more); at now + reset the key is fresh."""
    plan = data.draw(plans)
    for now, _cost, step, _ in replay(transition, plan, data.draw(call_sequences(plan))):
        allowed, remaining, reset, _, new_state, ttl = step
        if not allowed:
            continue
        assert ttl == reset > 0
        if remaining:
            assert transition(new_state, now, plan, remaining)[0]
        if remaining < plan.limit:
            assert not transition(new_state, now, plan, remaining + 1)[0]
        fresh = transition(new_state, now + reset, plan, plan.limit)
        assert fresh[0] and fresh[1] == 0


@given(st.data())
def test_refund_gives_cost_back_in_the_same_window(data: st.DataObject) -> None:
    """Refunding an admitted call at once restores the decisions the state gave before it."""
    plan = data.draw(plans)
    for now, cost, step, before in replay(transition, plan, data.draw(call_sequences(plan))):
        if not step[0]:
            continue
        refunded, ttl = refund(step[4], now, plan, cost)
        assert ttl >= 0
        for probe in range(1, plan.limit + 1):
            assert transition(refunded, now, plan, probe)[:4] == transition(before, now, plan, probe)[:4]


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


def test_registered_by_name_and_usable_from_the_decorator(clock: ManualClock) -> None:
    """rate_limit(algorithm="sliding_window") admits the limit, then raises with a retry_after."""
    assert algorithm_classes("sliding_window") == (SlidingWindowAlgorithm, AsyncSlidingWindowAlgorithm)

    @rate_limit("2/minute", algorithm="sliding_window", storage=InMemoryAdapter(clock=clock))
    def ping() -> str:
        return "pong"

    assert ping() == ping() == "pong"
    with pytest.raises(RateLimitExceeded) as refused:
        ping()
    assert refused.value.retry_after > 0


@pytest.mark.anyio
async def test_async_shell_shares_state_with_the_sync_one(clock: ManualClock) -> None:
    """AsyncSlidingWindowAlgorithm decides on the same counters as the sync shell."""
    adapter = InMemoryAdapter(clock=clock)
    plan = Plan("default", 2, 60)
    SlidingWindowAlgorithm(adapter).check("k", plan)
    algorithm = AsyncSlidingWindowAlgorithm(adapter)
    assert (await algorithm.check("k", plan)).remaining == 0
    assert not (await algorithm.check("k", plan)).allowed
    await algorithm.refund("k", plan)
    assert (await algorithm.check("k", plan)).allowed
