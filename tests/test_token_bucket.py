"""Token bucket: the pure transition's invariants, proven over random call sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import ManualClock, Plan
from limify.core.algorithms.token_bucket import TokenBucketAlgorithm, transition
from limify.core.memory_adapter import InMemoryAdapter
from tests.strategies import call_sequences, plans

START = 1_700_000_000_000_000


def replay(plan: Plan, calls: list[tuple[int, int, int]]) -> list[tuple[int, int, tuple]]:
    """Run calls through the transition; return (time, cost, step) for each."""
    state = None
    now = START
    out = []
    for _, cost, gap in calls:
        now += gap
        step = transition(state, now, plan, cost)
        if step[0]:
            state = step[4]
        out.append((now, cost, step))
    return out


@given(st.data())
def test_admitted_cost_in_any_window_is_bounded(data: st.DataObject) -> None:
    """Over any window of one period, admitted cost <= limit + what refilled in the window."""
    plan = data.draw(plans)
    history = replay(plan, data.draw(call_sequences(plan)))
    admitted = [(t, c) for t, c, step in history if step[0]]
    rate = plan.limit / plan.period_us
    for i, (start, _) in enumerate(admitted):
        spent = 0
        for t, cost in admitted[i:]:
            if t - start > plan.period_us:
                break
            spent += cost
            assert spent <= plan.limit + (t - start) * rate + 1e-9


@given(st.data())
def test_retry_after_is_exact(data: st.DataObject) -> None:
    """A refused call repeated at now + retry_after is admitted, and retry_after > 0."""
    plan = data.draw(plans)
    state = None
    now = START
    for _, cost, gap in data.draw(call_sequences(plan)):
        now += gap
        allowed, _, _, retry, new_state, _ = transition(state, now, plan, cost)
        if allowed:
            assert retry == 0
            state = new_state
            continue
        assert retry > 0
        assert transition(state, now + retry, plan, cost)[0]


@given(st.data())
def test_remaining_and_reset_match_what_the_next_call_sees(data: st.DataObject) -> None:
    """`remaining` can be spent right away (not one more); at now + reset the bucket is full."""
    plan = data.draw(plans)
    for now, _cost, step in replay(plan, data.draw(call_sequences(plan))):
        allowed, remaining, reset, _, new_state, ttl = step
        if not allowed:
            continue
        assert ttl == reset > 0
        if remaining:
            assert transition(new_state, now, plan, remaining)[0]
        if remaining < plan.limit:
            assert not transition(new_state, now, plan, remaining + 1)[0]
        full = transition(new_state, now + reset, plan, plan.limit)
        assert full[0] and full[1] == 0


def test_fresh_bucket_is_full_and_refills_continuously(clock: ManualClock) -> None:
    """Capacity = limit on first sight; tokens come back at limit/period, fractions included."""
    algorithm = TokenBucketAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 10, 60)
    results = [algorithm.check("k", plan) for _ in range(11)]
    assert [r.allowed for r in results] == [True] * 10 + [False]
    assert [r.remaining for r in results[:3]] == [9, 8, 7]
    assert results[-1].retry_after == pytest.approx(6.0)
    assert results[-1].reset_after == pytest.approx(60.0)
    clock.advance(3)  # half a token
    assert not algorithm.check("k", plan).allowed
    clock.advance(3)
    again = algorithm.check("k", plan)
    assert again.allowed and again.remaining == 0


def test_clock_stepping_back_refills_nothing(clock: ManualClock) -> None:
    """A skewed caller whose clock is behind neither gains tokens nor rewinds the bucket."""
    algorithm = TokenBucketAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 2, 10)
    assert algorithm.check("k", plan).allowed and algorithm.check("k", plan).allowed
    clock.advance(-30)
    refused = algorithm.check("k", plan)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(35.0)  # 30 s of skew + 5 s per token
    clock.advance(35)
    assert algorithm.check("k", plan).allowed


def test_cost_is_spent_at_once(clock: ManualClock) -> None:
    """A call of cost c takes c tokens, all or none."""
    algorithm = TokenBucketAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 5, 5)
    assert algorithm.check("k", plan, cost=4).remaining == 1
    refused = algorithm.check("k", plan, cost=2)
    assert not refused.allowed and refused.remaining == 1
    assert refused.retry_after == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cost"):
        algorithm.check("k", plan, cost=0)


def test_refund_gives_cost_back_up_to_capacity(clock: ManualClock) -> None:
    """refund() returns spent tokens, never beyond the limit."""
    algorithm = TokenBucketAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 3, 30)
    algorithm.check("k", plan, cost=3)
    after = algorithm.refund("k", plan, cost=2)  # reports what a call of cost 2 would now get
    assert after.allowed and after.remaining == 0
    assert algorithm.check("k", plan, cost=2).allowed
    algorithm.refund("k", plan, cost=3)
    assert algorithm.peek("k", plan, cost=3).allowed
    assert not algorithm.check_all(["k"], [plan], cost=3, mode="1").remaining
    assert algorithm.refund("fresh", plan).remaining == 2  # nothing to give back to a full bucket
