"""Leaky bucket (meter): its level arithmetic on refunds and its storage form (the contract is shared)."""

from __future__ import annotations

from typing import Any

import redis
from hypothesis import given

from limify import ManualClock, Plan
from limify.core.algorithms.leaky_bucket import LEAKY_BUCKET, LeakyBucketAlgorithm, refund, transition
from limify.core.redis_adapter import RedisSyncAdapter
from tests.strategies import later_refunds, plans, starts_us


def level(state: Any, now: int, plan: Plan) -> float:
    """The water level the next call at ``now`` sees."""
    if state is None:
        return 0.0
    water, last = state
    rate = plan.limit / plan.period_us  # computed as the transition does, for identical rounding
    return float(water) if now <= last else max(0.0, water - (now - last) * rate)


@given(later_refunds(LEAKY_BUCKET))
def test_refund_takes_cost_back_out(case: tuple[Plan, Any, int, int]) -> None:
    """A refund of c lowers the level by c, never below empty; an empty bucket needs no state."""
    plan, state, now, cost = case
    refunded, ttl = refund(state, now, plan, cost)
    assert level(refunded, now, plan) == max(0.0, level(state, now, plan) - cost)
    assert (ttl > 0) == (level(refunded, now, plan) > 0)


@given(plans, starts_us)
def test_a_full_bucket_drains_in_one_period(plan: Plan, now: int) -> None:
    """The whole limit at once drains in a period (a µs more for rounding): no refused call waits longer."""
    assert transition(None, now, plan, plan.limit)[2] <= plan.period_us + 1


def test_redis_state_is_level_and_stamp_with_its_ttl(redis_client: redis.Redis, clock: ManualClock) -> None:
    """On Redis the key is the string "level:last_us", living until the bucket is empty."""
    algorithm = LeakyBucketAlgorithm(RedisSyncAdapter(redis_client, clock=clock))
    plan = Plan("default", 4, 8)
    algorithm.check("k", plan, cost=3)
    assert redis_client.get("k") == f"3:{clock.now_us()}".encode()
    assert 5_000 < redis_client.pttl("k") <= 6_000  # 3 units at 0.5 unit/s
