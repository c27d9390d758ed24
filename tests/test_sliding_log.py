"""Sliding log: exact admission over any window, its entries, limits and memory (the contract is shared)."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, Plan, PlanError, Rule, rate_limit
from limify.core.algorithms.sliding_log import (
    MAX_LOG_LIMIT,
    REBASE_AT,
    SLIDING_LOG,
    SlidingLogAlgorithm,
    refund,
    transition,
)
from limify.core.redis_adapter import RedisSyncAdapter
from limify.core.check import Check
from tests.histories import admitted, replay
from tests.strategies import call_sequences, later_refunds, plans, starts_us

START = 1_700_000_000_000_000


def used(state: Any, now: int, plan: Plan) -> int:
    """Cost the log counts at ``now``, read through the transition's own report."""
    allowed, remaining = transition(state, now, plan, 1)[:2]
    return plan.limit - remaining - (1 if allowed else 0)


@given(st.data())
def test_admitted_cost_in_any_window_is_exactly_bounded(data: st.DataObject) -> None:
    """In any window of one period at most `limit` is admitted, and a refusal means the window was full."""
    plan = data.draw(plans)
    history = replay(transition, plan, data.draw(call_sequences(plan)))
    calls = admitted(history)
    for start, _ in calls:
        assert sum(c for t, c in calls if start <= t < start + plan.period_us) <= plan.limit
    for now, cost, step, _ in history:
        if step.allowed:
            assert step.ttl_us == step.reset_us == plan.period_us  # the newest entry is the one just made
        else:
            in_window = sum(c for t, c in calls if now - plan.period_us < t <= now)
            assert in_window + cost > plan.limit


@given(later_refunds(SLIDING_LOG))
def test_refund_gives_cost_back(case: tuple[Plan, Any, int, int]) -> None:
    """A refund of c lowers what the window counts by c (down to zero), and nothing else."""
    plan, state, now, cost = case
    before = used(state, now, plan)
    refunded, ttl = refund(state, now, plan, cost)
    assert used(refunded, now, plan) == max(0, before - cost)
    assert (ttl > 0) == (refunded is not None)


@given(plans, starts_us)
def test_a_spent_log_ages_out_in_one_period(plan: Plan, now: int) -> None:
    """The whole limit at once ages out exactly one period later: no refused call waits longer."""
    assert transition(None, now, plan, plan.limit)[2] == plan.period_us


def test_fresh_log_admits_limit_then_frees_units_as_they_age(clock: ManualClock) -> None:
    """Capacity = limit; each unit comes back exactly one period after it was spent."""
    algorithm = SlidingLogAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 3, 60)
    first = algorithm.check("k", plan)
    clock.advance(10)
    assert algorithm.check("k", plan, cost=2).remaining == 0
    refused = algorithm.check("k", plan)
    assert not refused.allowed and refused.retry_after == pytest.approx(50.0)
    assert refused.reset_after == pytest.approx(60.0)
    clock.advance(50)
    again = algorithm.check("k", plan)
    assert again.allowed and again.remaining == 0 and first.allowed
    assert not algorithm.check("k", plan, cost=2).allowed  # the cost-2 call ages out at 70 s


def test_many_calls_in_one_microsecond_are_all_kept(sync_storage: Any, clock: ManualClock) -> None:
    """500 calls stamped with the same microsecond are 500 entries: the 501st is refused."""
    algorithm = SlidingLogAlgorithm(sync_storage)
    plan = Plan("default", 500, 60)
    assert all(algorithm.check("k", plan).allowed for _ in range(500))
    refused = algorithm.check("k", plan)
    assert not refused.allowed and refused.retry_after == pytest.approx(60.0)
    if isinstance(sync_storage, RedisSyncAdapter):
        assert sync_storage.client.zcard("k") == 500
        assert 59_000 < sync_storage.client.pttl("k") <= 60_000  # until the newest entry ages out
    algorithm.refund("k", plan, cost=7)
    assert algorithm.peek("k", plan, cost=7).allowed
    assert not algorithm.peek("k", plan, cost=8).allowed


def test_calls_stamped_after_a_skewed_callers_clock_still_count(
    sync_storage: Any, clock: ManualClock
) -> None:
    """A caller whose clock runs behind sees the entries other callers stamped later (no 501 of 500)."""
    algorithm = SlidingLogAlgorithm(sync_storage)
    plan = Plan("default", 500, 60)
    behind = clock.now_us()
    admitted = 0
    for i in range(1000):
        clock.set(behind + (1_000 if i % 2 else 0))  # two app servers, one 1 ms ahead
        admitted += algorithm.check("k", plan).allowed
    assert admitted == 500
    clock.set(behind)
    refused = algorithm.check("k", plan)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(60.0)  # the oldest entry was stamped at `behind`
    clock.set(behind + 60_000_000)
    assert algorithm.check("k", plan).allowed


def test_entries_are_never_stamped_before_the_newest(clock: ManualClock) -> None:
    """A caller whose clock steps back is stamped with the newest time, so its call lasts a full period."""
    plan = Plan("default", 2, 10)
    now = clock.now_us()
    first = transition(None, now, plan, 1)
    second = transition(first[4], now - 5_000_000, plan, 1)
    assert second[0] and second[2] == 15_000_000  # ages out 10 s after `now`, 15 s after its own clock
    assert transition(second[4], now + 10_000_000 - 1, plan, 2)[3] == 1


def test_cum_is_rebased_identically_in_python_and_lua(redis_client: redis.Redis) -> None:
    """Before the running total could leave exact doubles, both twins restart it from the live entries."""
    clock = ManualClock()
    now = clock.now_us()
    plan = Plan("default", 10, 60)
    expired = (now - 90_000_000, REBASE_AT - 7, 3, "")
    live = [(now - 30_000_000, REBASE_AT - 4, 3, ""), (now - 10_000_000, REBASE_AT - 1, 3, "")]
    redis_client.zadd("k", {f"{cum:016d}:{cost}": stamp for stamp, cum, cost, _ in [expired, *live]})
    remote = RedisSyncAdapter(redis_client, clock=clock)
    step = transition(([expired, *live], 0, 3), now, plan, 2)
    assert step[:4] == (True, 2, 60_000_000, 0)
    assert remote.execute(Check(SLIDING_LOG, ("k",), (plan,), 2)) == (*step[:4], 0, now)
    state = step[4]
    assert state[0][state[1] : state[2]] == [
        (now - 30_000_000, 3, 3, ""),
        (now - 10_000_000, 6, 3, ""),
        (now, 8, 2, ""),
    ]
    assert redis_client.zrange("k", 0, -1, withscores=True) == [
        (b"0000000000000003:3", now - 30_000_000),
        (b"0000000000000006:3", now - 10_000_000),
        (b"0000000000000008:2", now),
    ]
    for cost in (1, 1, 1):
        step = transition(state, now, plan, cost)
        assert remote.execute(Check(SLIDING_LOG, ("k",), (plan,), cost)) == (*step[:4], 0, now)
        state = step[4] if step[0] else state


def test_successive_calls_share_one_list() -> None:
    """Admitting a call appends to the log in place (amortised O(1)), older states stay intact."""
    plan = Plan("default", 1000, 60)
    state = transition(None, START, plan, 1)[4]
    states = [state]
    for i in range(1, 200):
        state = transition(state, START + i, plan, 1)[4]
        states.append(state)
    assert all(s[0] is state[0] for s in states)
    branched = transition(states[10], START + 500, plan, 5)[4]  # an older state: copied, not shared
    assert branched[0] is not state[0] and branched[0][-1] == (START + 500, 16, 5, "")
    assert [entry[1] for entry in state[0][state[1] : state[2]]] == list(range(1, 201))


def test_a_lowered_limit_applies_to_the_existing_log(sync_storage: Any, clock: ManualClock) -> None:
    """When a plan's limit drops below what the log holds, calls wait until enough entries age out."""
    algorithm = SlidingLogAlgorithm(sync_storage)
    for _ in range(5):
        algorithm.check("k", Plan("default", 5, 60))
        clock.advance(1)
    refused = algorithm.check("k", Plan("default", 3, 60))
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after == pytest.approx(57.0)  # now is 5 s; the third entry (2 s) ages out at 62 s


def test_limits_above_the_log_maximum_are_refused_where_declared() -> None:
    """A sliding log above MAX_LOG_LIMIT is a ValueError pointing to sliding_window, wherever declared."""
    too_many = f"{MAX_LOG_LIMIT + 1}/hour"
    rate_limit(f"{MAX_LOG_LIMIT}/hour", algorithm="sliding_log")  # the maximum itself is fine
    with pytest.raises(ValueError, match="sliding_window"):
        rate_limit(too_many, algorithm="sliding_log")
    with pytest.raises(ValueError, match="rule 'big'.*sliding_window"):
        Rule("big", rate=too_many, algorithm="sliding_log")
    with pytest.raises(ValueError, match="rule 'big'.*sliding_window"):
        Limify("sliding_log", LimifyConfig([Rule("big", rate=too_many)]))
    with pytest.raises(PlanError, match="sliding_window"):
        SlidingLogAlgorithm(InMemoryAdapter()).check("k", Plan("big", MAX_LOG_LIMIT + 1, 3600))


def test_a_provider_plan_above_the_log_maximum_is_a_plan_error() -> None:
    """A plan provider handing out a limit above MAX_LOG_LIMIT gets PlanError at the call, naming the plan."""

    @rate_limit("10/hour", algorithm="sliding_log", storage=InMemoryAdapter(),
                plan_provider=lambda context: Plan("firehose", 10**6, 3600))  # fmt: skip
    def call() -> None:
        return None

    with pytest.raises(PlanError, match="'firehose'"):
        call()


def test_a_flooded_key_at_the_maximum_stays_within_its_memory_bound() -> None:
    """A key flooded at MAX_LOG_LIMIT/hour holds at most the limit's entries: about 1.5 MB, never more."""
    plan = Plan("default", MAX_LOG_LIMIT, 3600)
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    state: Any = None
    admitted = 0
    for offset in range(2 * MAX_LOG_LIMIT):
        step = transition(state, START + offset, plan, 1)
        if step[0]:
            admitted += 1
            state = step[4]
    used = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert admitted == MAX_LOG_LIMIT and state[2] - state[1] == MAX_LOG_LIMIT
    assert used < MAX_LOG_LIMIT * 200
