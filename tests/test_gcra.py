"""GCRA: exact arrival-time arithmetic, its refunds and its storage form (the contract is shared)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms.gcra import GCRA, GCRAAlgorithm, refund, transition
from limify.core.redis_adapter import RedisSyncAdapter
from limify.core.check import Check
from tests.strategies import later_refunds, plans, starts_us

START = 1_700_000_000_000_000


def ahead(state: Any, now: int) -> Fraction:
    """How far the theoretical arrival time is ahead of ``now``, exactly (0 for a fresh key)."""
    return Fraction(0) if state is None else max(Fraction(0), state[0] - now + Fraction(state[1], state[2]))


@given(later_refunds(GCRA))
def test_refund_moves_the_arrival_time_back_by_cost_intervals(case: tuple[Plan, Any, int, int]) -> None:
    """A refund of c gives back exactly c * T of time, stopping at a fresh key; the TTL follows it."""
    plan, state, now, cost = case
    refunded, ttl = refund(state, now, plan, cost)
    expected = ahead(state, now) - cost * Fraction(plan.period_us, plan.limit)
    if expected <= 0:
        assert (refunded, ttl) == (None, 0)
    else:
        assert ahead(refunded, now) == expected
        assert ttl == math.ceil(expected)


@given(st.data())
def test_spending_then_refunding_restores_a_fresh_key(data: st.DataObject) -> None:
    """Consume c on a fresh key and refund c at once: the key is fresh again (no unit lost to rounding)."""
    plan = data.draw(plans)
    cost = data.draw(st.integers(1, plan.limit))
    spent = transition(None, START, plan, cost)
    assert spent[0]
    assert refund(spent[4], START, plan, cost) == (None, 0)


@given(plans, starts_us)
def test_a_key_that_spent_its_limit_is_fresh_one_period_later(plan: Plan, now: int) -> None:
    """The whole limit at once puts the arrival time one period ahead: no refused call waits longer."""
    assert transition(None, now, plan, plan.limit)[2] == plan.period_us


@pytest.mark.parametrize(
    ("limit", "period"),
    [(3, 2), (7, 3), (11, 400 * 86400), (1_001, 30 * 86400), (30_000, 1), (99_991, 86400)],
)
def test_fresh_key_bursts_exactly_the_limit(limit: int, period: float) -> None:
    """A fresh key admits exactly `limit` at once, whatever fraction T is (no drift in the arrival time)."""
    plan = Plan("default", limit, period)
    state = None
    admitted = 0
    while True:
        step = transition(state, START, plan, 1)
        if not step[0]:
            break
        admitted += 1
        state = step[4]
        assert step[1] == limit - admitted
    assert admitted == limit
    assert step[3] == math.ceil(Fraction(plan.period_us, limit))  # the next unit one interval later


def test_steady_rate_after_the_burst(clock: ManualClock) -> None:
    """After a burst, one unit is admitted every T = period / limit, none sooner."""
    algorithm = GCRAAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 4, 2)  # T = 0.5 s
    assert [algorithm.check("k", plan).allowed for _ in range(5)] == [True] * 4 + [False]
    for _ in range(3):
        clock.advance(0.499999)
        assert not algorithm.check("k", plan).allowed
        clock.advance(us=1)
        result = algorithm.check("k", plan)
        assert result.allowed and result.remaining == 0
        assert result.reset_after == pytest.approx(2.0)


def test_redis_state_is_the_arrival_time_with_its_ttl(redis_client: redis.Redis, clock: ManualClock) -> None:
    """On Redis the key is one string, whole µs + k/limit, living until the arrival time passes."""
    algorithm = GCRAAlgorithm(RedisSyncAdapter(redis_client, clock=clock))
    plan = Plan("default", 3, 2)  # T = 666666 + 2/3 µs
    now = clock.now_us()
    result = algorithm.check("k", plan)
    assert result.remaining == 2 and result.reset_after == pytest.approx(0.666667)
    assert redis_client.get("k") == f"{now + 666_666}+2/3".encode()
    assert 0 < redis_client.pttl("k") <= 1000  # the one-second floor (tat - now is less)
    for _ in range(2):
        algorithm.check("k", plan)
    assert redis_client.get("k") == f"{now + 2_000_000}+0/3".encode()
    assert 1000 < redis_client.pttl("k") <= 2000


def test_a_changed_limit_rounds_the_old_state_up(sync_storage: Any, clock: ManualClock) -> None:
    """A key written under another limit keeps its arrival time, rounded up to a whole microsecond."""
    now = clock.now_us()
    state = transition(None, now, Plan("default", 3, 2), 1)[4]
    assert state == (now + 666_666, 2, 3)
    assert transition(state, now, Plan("default", 4, 2), 1)[4] == (now + 1_166_667, 0, 4)  # T = 0.5 s
    algorithm = GCRAAlgorithm(sync_storage)
    algorithm.check("k", Plan("default", 3, 2))
    after = algorithm.check("k", Plan("default", 4, 2), cost=2)  # from 0.666667 s ahead, + 2 x 0.5 s
    assert after.allowed and after.remaining == 0 and after.reset_after == pytest.approx(1.666667)


@settings(max_examples=25)
@given(
    limit=st.integers(2**26, 10**12),
    period=st.sampled_from([1, 3, 86400, 400 * 86400]),
    calls=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 10**9)), min_size=1, max_size=8),
)
def test_huge_limits_stay_exact_in_lua(
    redis_client: redis.Redis, limit: int, period: int, calls: list[tuple[float, int]]
) -> None:
    """With limits past 2**26, c * r exceeds exact doubles; the Lua twin still matches Python."""
    redis_client.flushdb()
    plan = Plan("default", limit, period)
    clock = ManualClock()
    memory = InMemoryAdapter(clock=clock)
    remote = RedisSyncAdapter(redis_client, clock=clock)
    for fraction, gap in calls:
        clock.advance(us=gap)
        cost = max(1, int(fraction * limit))
        for mode in ("0", "1", "2"):
            check = Check(GCRA, ("k",), (plan,), cost, mode)
            assert remote.execute(check) == memory.execute(check)
