"""Fixed window: the pure transition's invariants, proven over random call sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan, RateLimitExceeded, rate_limit
from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.fixed_window import (
    AsyncFixedWindowAlgorithm,
    FixedWindowAlgorithm,
    refund,
    transition,
)
from tests.histories import admitted, replay
from tests.strategies import call_sequences, plans


@given(st.data())
def test_admitted_cost_is_bounded_per_window_and_per_span(data: st.DataObject) -> None:
    """Each aligned window admits at most limit; any span of one period at most 2 * limit."""
    plan = data.draw(plans)
    calls = admitted(replay(transition, plan, data.draw(call_sequences(plan))))
    period = plan.period_us
    per_window: dict[int, int] = {}
    for t, cost in calls:
        per_window[t // period] = per_window.get(t // period, 0) + cost
    assert max(per_window.values()) <= plan.limit
    for start, _ in calls:
        assert sum(cost for t, cost in calls if start <= t < start + period) <= 2 * plan.limit


@given(st.data())
def test_retry_after_is_exact_and_shortest(data: st.DataObject) -> None:
    """A refused call is admitted at now + retry_after, and still refused a microsecond earlier."""
    plan = data.draw(plans)
    for now, cost, step, state in replay(transition, plan, data.draw(call_sequences(plan))):
        allowed, _, reset, retry, _, _ = step
        if allowed:
            assert retry == 0
            continue
        assert retry == reset > 0
        assert transition(state, now + retry, plan, cost)[0]
        assert not transition(state, now + retry - 1, plan, cost)[0]


@given(st.data())
def test_remaining_and_reset_match_what_the_next_call_sees(data: st.DataObject) -> None:
    """`remaining` can be spent right away (not one more); at now + reset the window is fresh."""
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
        assert not transition(new_state, now + reset - 1, plan, plan.limit)[0]


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


def test_windows_are_aligned_to_the_period(clock: ManualClock) -> None:
    """A minute window opens on the minute: 3 calls, a refusal, then a fresh window at :00."""
    clock.set(1_700_000_020_000_000)  # 40 s into a minute
    algorithm = FixedWindowAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 3, 60)
    assert [algorithm.check("k", plan).remaining for _ in range(3)] == [2, 1, 0]
    refused = algorithm.check("k", plan)
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after == refused.reset_after == pytest.approx(20.0)
    clock.advance(20)
    assert algorithm.check("k", plan).remaining == 2


def test_refund_of_a_closed_window_gives_nothing(clock: ManualClock) -> None:
    """A refund reaching a window that rolled over cannot raise the new window's allowance."""
    clock.set(1_700_000_020_000_000)  # 40 s into a minute
    algorithm = FixedWindowAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 3, 60)
    algorithm.check("k", plan, cost=3)
    assert algorithm.refund("k", plan, cost=2).remaining == 0  # 1 used + a peek of 2
    algorithm.check("k", plan, cost=2)
    clock.advance(20)
    algorithm.refund("k", plan, cost=3)
    assert [algorithm.check("k", plan).allowed for _ in range(4)] == [True, True, True, False]


def test_clock_stepping_back_never_reopens_a_window(clock: ManualClock) -> None:
    """A skewed caller behind the writer still sees the later window's count."""
    clock.set(1_700_000_020_000_000)  # 40 s into a minute
    algorithm = FixedWindowAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 2, 60)
    clock.advance(30)  # next window, 10 s in
    algorithm.check("k", plan, cost=2)
    clock.advance(-30)  # back in the previous window
    refused = algorithm.check("k", plan)
    assert not refused.allowed and refused.retry_after == pytest.approx(80.0)


def test_registered_by_name_and_usable_from_the_decorator(clock: ManualClock) -> None:
    """rate_limit(algorithm="fixed_window") admits the limit per window, then raises."""
    assert algorithm_classes("fixed_window") == (FixedWindowAlgorithm, AsyncFixedWindowAlgorithm)

    @rate_limit("2/minute", algorithm="fixed_window", storage=InMemoryAdapter(clock=clock))
    def ping() -> str:
        return "pong"

    assert ping() == ping() == "pong"
    with pytest.raises(RateLimitExceeded):
        ping()


@pytest.mark.anyio
async def test_async_shell_shares_state_with_the_sync_one(clock: ManualClock) -> None:
    """AsyncFixedWindowAlgorithm decides on the same counter as the sync shell."""
    adapter = InMemoryAdapter(clock=clock)
    plan = Plan("default", 2, 60)
    FixedWindowAlgorithm(adapter).check("k", plan)
    algorithm = AsyncFixedWindowAlgorithm(adapter)
    assert (await algorithm.check("k", plan)).remaining == 0
    assert not (await algorithm.check("k", plan)).allowed
    await algorithm.refund("k", plan)
    assert (await algorithm.check("k", plan)).allowed
