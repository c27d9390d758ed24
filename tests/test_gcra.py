"""GCRA: the pure transition's invariants, proven over random call sequences, and its storage form."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan, RateLimitExceeded, rate_limit
from limify.core.algorithms.gcra import GCRA, AsyncGCRAAlgorithm, GCRAAlgorithm, refund, transition
from limify.core.redis_adapter import RedisSyncAdapter
from limify.core.check import Check
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


def ahead(state: Any, now: int) -> Fraction:
    """How far the theoretical arrival time is ahead of ``now``, exactly (0 for a fresh key)."""
    return Fraction(0) if state is None else max(Fraction(0), state[0] - now + Fraction(state[1], state[2]))


@given(st.data())
def test_admitted_cost_in_any_window_is_bounded(data: st.DataObject) -> None:
    """Over any window of w µs, admitted cost <= limit + w / T (the burst plus the steady rate)."""
    plan = data.draw(plans)
    history, _ = replay(plan, data.draw(call_sequences(plan)))
    admitted = [(t, c) for t, c, step in history if step[0]]
    per_us = plan.limit / plan.period_us
    for i, (start, _) in enumerate(admitted):
        spent = 0
        for t, cost in admitted[i:]:
            spent += cost
            assert spent <= plan.limit + (t - start) * per_us + 1e-9 * spent


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
        assert 0 < retry <= plan.period_us
        assert transition(state, now + retry, plan, cost)[0]
        assert not transition(state, now + retry - 1, plan, cost)[0]


@given(st.data())
def test_remaining_and_reset_match_what_the_next_call_sees(data: st.DataObject) -> None:
    """`remaining` can be spent right away (not one more); at now + reset the key acts as fresh."""
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
        at_reset = now + reset
        assert (
            transition(new_state, at_reset, plan, plan.limit)[:4]
            == transition(None, at_reset, plan, plan.limit)[:4]
        )


@given(st.data())
def test_refund_moves_the_arrival_time_back_by_cost_intervals(data: st.DataObject) -> None:
    """A refund of c gives back exactly c * T of time, stopping at a fresh key; the TTL follows it."""
    plan = data.draw(plans)
    history, state = replay(plan, data.draw(call_sequences(plan)))
    now = history[-1][0] + data.draw(st.integers(0, plan.period_us))
    cost = data.draw(st.integers(1, plan.limit))
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


def test_clock_stepping_back_gains_nothing(clock: ManualClock) -> None:
    """A skewed caller whose clock is behind neither gains units nor rewinds the arrival time."""
    algorithm = GCRAAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 2, 10)
    assert algorithm.check("k", plan).allowed and algorithm.check("k", plan).allowed
    clock.advance(-30)
    refused = algorithm.check("k", plan)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(35.0)  # 30 s of skew + one interval of 5 s
    clock.advance(35)
    assert algorithm.check("k", plan).allowed


def test_refund_on_storage(sync_storage: Any, clock: ManualClock) -> None:
    """refund() gives units back on both stores, never more than a fresh key has."""
    algorithm = GCRAAlgorithm(sync_storage)
    plan = Plan("default", 3, 30)
    algorithm.check("k", plan, cost=3)
    after = algorithm.refund("k", plan, cost=2)
    assert after.allowed and after.remaining == 0  # what a call of cost 2 would now leave
    assert algorithm.check("k", plan, cost=2).allowed
    algorithm.refund("k", plan, cost=3)
    assert algorithm.peek("k", plan, cost=3).allowed
    assert algorithm.refund("fresh", plan).remaining == 2


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


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_decorator_accepts_the_name(storage: str, request: pytest.FixtureRequest, clock: ManualClock) -> None:
    """`algorithm="gcra"` limits a decorated function, in memory and on Redis."""
    if storage == "memory":
        adapter: Any = InMemoryAdapter(clock=clock)
    else:
        adapter = RedisSyncAdapter(request.getfixturevalue("redis_client"), clock=clock)

    @rate_limit("2/minute", algorithm="gcra", storage=adapter)
    def ping() -> str:
        return "pong"

    assert ping() == ping() == "pong"
    with pytest.raises(RateLimitExceeded) as refused:
        ping()
    assert refused.value.retry_after == pytest.approx(30.0)


@pytest.mark.anyio
async def test_async_shell_works_on_memory(clock: ManualClock) -> None:
    """The async shell gives the same decisions as the sync one."""
    algorithm = AsyncGCRAAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 2, 1)
    assert (await algorithm.check("k", plan, cost=2)).allowed
    assert not (await algorithm.peek("k", plan)).allowed
    await algorithm.reset("k")
    assert (await algorithm.check("k", plan)).remaining == 1
