"""Leaky bucket (meter): the pure transition's invariants, proven over random call sequences."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan, RateLimitExceeded, rate_limit
from limify.core.algorithms.leaky_bucket import (
    AsyncLeakyBucketAlgorithm,
    LeakyBucketAlgorithm,
    refund,
    transition,
)
from limify.core.redis_adapter import RedisSyncAdapter
from tests.strategies import call_sequences, plans

START = 1_700_000_000_000_000


def replay(plan: Plan, calls: list[tuple[int, int, int]]) -> tuple[list[tuple[int, int, tuple]], Any]:
    """Run calls through the transition; return (time, cost, step) for each and the final state."""
    state = None
    now = START
    out = []
    for _, cost, gap in calls:
        now += gap
        step = transition(state, now, plan, cost)
        if step[0]:
            state = step[4]
        out.append((now, cost, step))
    return out, state


def level(state: Any, now: int, plan: Plan) -> float:
    """The water level the next call at ``now`` sees."""
    if state is None:
        return 0.0
    water, last = state
    rate = plan.limit / plan.period_us  # computed as the transition does, for identical rounding
    return float(water) if now <= last else max(0.0, water - (now - last) * rate)


@given(st.data())
def test_admitted_cost_in_any_window_is_bounded(data: st.DataObject) -> None:
    """Over any window, admitted cost <= limit + what drained in the window (capacity plus leak)."""
    plan = data.draw(plans)
    history, _ = replay(plan, data.draw(call_sequences(plan)))
    admitted = [(t, c) for t, c, step in history if step[0]]
    rate = plan.limit / plan.period_us
    for i, (start, _) in enumerate(admitted):
        poured = 0
        for t, cost in admitted[i:]:
            poured += cost
            assert poured <= plan.limit + (t - start) * rate + 1e-9 * poured


@given(st.data())
def test_retry_after_is_exact(data: st.DataObject) -> None:
    """A refused call is admitted at now + retry_after and still refused one microsecond earlier."""
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
        assert 0 < retry <= plan.period_us + 1  # float rounding may add a microsecond
        assert transition(state, now + retry, plan, cost)[0]
        assert not transition(state, now + retry - 1, plan, cost)[0]


@given(st.data())
def test_remaining_and_reset_match_what_the_next_call_sees(data: st.DataObject) -> None:
    """`remaining` can be poured in right away (not one more); at now + reset the bucket is empty."""
    plan = data.draw(plans)
    history, _ = replay(plan, data.draw(call_sequences(plan)))
    for now, _cost, step in history:
        allowed, remaining, reset, _, new_state, ttl = step
        if not allowed:
            continue
        assert ttl == reset > 0
        if remaining:
            assert transition(new_state, now, plan, remaining)[0]
        if remaining < plan.limit:
            assert not transition(new_state, now, plan, remaining + 1)[0]
        assert level(new_state, now + reset, plan) == 0.0
        full = transition(new_state, now + reset, plan, plan.limit)
        assert full[0] and full[1] == 0


@given(st.data())
def test_refund_takes_cost_back_out(data: st.DataObject) -> None:
    """A refund of c lowers the level by c, never below empty; an empty bucket needs no state."""
    plan = data.draw(plans)
    history, state = replay(plan, data.draw(call_sequences(plan)))
    now = history[-1][0] + data.draw(st.integers(0, plan.period_us))
    cost = data.draw(st.integers(1, plan.limit))
    refunded, ttl = refund(state, now, plan, cost)
    assert level(refunded, now, plan) == max(0.0, level(state, now, plan) - cost)
    assert (ttl > 0) == (level(refunded, now, plan) > 0)


def test_bucket_fills_to_capacity_then_drains_continuously(clock: ManualClock) -> None:
    """Capacity = limit from empty; room comes back at limit/period, fractions included."""
    algorithm = LeakyBucketAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 10, 60)
    results = [algorithm.check("k", plan) for _ in range(11)]
    assert [r.allowed for r in results] == [True] * 10 + [False]
    assert [r.remaining for r in results[:3]] == [9, 8, 7]
    assert results[-1].retry_after == pytest.approx(6.0)
    assert results[-1].reset_after == pytest.approx(60.0)
    clock.advance(3)  # half a unit drained
    assert not algorithm.check("k", plan).allowed
    clock.advance(3)
    again = algorithm.check("k", plan)
    assert again.allowed and again.remaining == 0


def test_clock_stepping_back_drains_nothing(clock: ManualClock) -> None:
    """A skewed caller whose clock is behind neither drains the bucket nor rewinds it."""
    algorithm = LeakyBucketAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 2, 10)
    assert algorithm.check("k", plan).allowed and algorithm.check("k", plan).allowed
    clock.advance(-30)
    refused = algorithm.check("k", plan)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(35.0)  # 30 s of skew + 5 s per unit
    clock.advance(35)
    assert algorithm.check("k", plan).allowed


def test_cost_is_poured_at_once(sync_storage: Any) -> None:
    """A call of cost c pours c units, all or none, on both stores."""
    algorithm = LeakyBucketAlgorithm(sync_storage)
    plan = Plan("default", 5, 5)
    assert algorithm.check("k", plan, cost=4).remaining == 1
    refused = algorithm.check("k", plan, cost=2)
    assert not refused.allowed and refused.remaining == 1
    assert refused.retry_after == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cost"):
        algorithm.check("k", plan, cost=6)


def test_refund_on_storage(sync_storage: Any) -> None:
    """refund() takes units back out on both stores, never below empty."""
    algorithm = LeakyBucketAlgorithm(sync_storage)
    plan = Plan("default", 3, 30)
    algorithm.check("k", plan, cost=3)
    after = algorithm.refund("k", plan, cost=2)
    assert after.allowed and after.remaining == 0  # what a call of cost 2 would now leave
    assert algorithm.check("k", plan, cost=2).allowed
    algorithm.refund("k", plan, cost=3)
    assert algorithm.peek("k", plan, cost=3).allowed
    assert algorithm.refund("fresh", plan).remaining == 2  # nothing to take out of an empty bucket


def test_redis_state_is_level_and_stamp_with_its_ttl(redis_client: redis.Redis, clock: ManualClock) -> None:
    """On Redis the key is the string "level:last_us", living until the bucket is empty."""
    algorithm = LeakyBucketAlgorithm(RedisSyncAdapter(redis_client, clock=clock))
    plan = Plan("default", 4, 8)
    algorithm.check("k", plan, cost=3)
    assert redis_client.get("k") == f"3:{clock.now_us()}".encode()
    assert 5_000 < redis_client.pttl("k") <= 6_000  # 3 units at 0.5 unit/s


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_decorator_accepts_the_name(storage: str, request: pytest.FixtureRequest, clock: ManualClock) -> None:
    """`algorithm="leaky_bucket"` limits a decorated function, in memory and on Redis."""
    if storage == "memory":
        adapter: Any = InMemoryAdapter(clock=clock)
    else:
        adapter = RedisSyncAdapter(request.getfixturevalue("redis_client"), clock=clock)

    @rate_limit("2/minute", algorithm="leaky_bucket", storage=adapter)
    def ping() -> str:
        return "pong"

    assert ping() == ping() == "pong"
    with pytest.raises(RateLimitExceeded) as refused:
        ping()
    assert refused.value.retry_after == pytest.approx(30.0)


@pytest.mark.anyio
async def test_async_shell_works_on_memory(clock: ManualClock) -> None:
    """The async shell gives the same decisions as the sync one."""
    algorithm = AsyncLeakyBucketAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 2, 1)
    assert (await algorithm.check("k", plan, cost=2)).allowed
    assert not (await algorithm.peek("k", plan)).allowed
    await algorithm.reset("k")
    assert (await algorithm.check("k", plan)).remaining == 1
