"""Concurrency limit shells on memory and on the real redis-server; the Lua twin against Python."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan, RateLimitExceeded
from limify.core.algorithms.base import CONSUME, PEEK, REFUND
from limify.core.algorithms.concurrency import CONCURRENCY, ConcurrencyAlgorithm
from limify.core.redis_adapter import RedisSyncAdapter
from limify.core.check import Check
from tests.strategies import LEASE_START, LeaseTimeline, lease_histories, lease_plans

PLAN = Plan("default", 2, 30)


def test_slots_are_held_until_released(sync_storage: Any, clock: ManualClock) -> None:
    """acquire() takes a slot under a fresh token; release() gives it back, once."""
    limiter = ConcurrencyAlgorithm(sync_storage)
    first, token_a = limiter.acquire("k", PLAN)
    second, token_b = limiter.acquire("k", PLAN)
    assert (first.allowed, first.remaining, second.allowed, second.remaining) == (True, 1, True, 0)
    assert token_a != token_b
    clock.advance(5)
    refused, _ = limiter.acquire("k", PLAN)
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after == pytest.approx(25.0)  # when token_a's lease expires
    assert refused.reset_after == pytest.approx(25.0)
    after = limiter.release("k", PLAN, token_a)
    assert after.allowed and after.remaining == 0  # what a call would get now: the freed slot
    assert limiter.release("k", PLAN, token_a).remaining == 0  # idempotent: frees nothing more
    assert limiter.peek("k", PLAN).allowed
    assert limiter.acquire("k", PLAN)[0].allowed
    assert not limiter.peek("k", PLAN).allowed


def test_a_lease_expiring_now_is_free(sync_storage: Any, clock: ManualClock) -> None:
    """At its expiry instant a lease no longer counts, and no wait is computed from it."""
    limiter = ConcurrencyAlgorithm(sync_storage)
    limiter.acquire("k", PLAN)
    clock.advance(1)
    limiter.acquire("k", PLAN)
    clock.advance(29)  # the first lease expires right now; the second in 1 s
    refused, _ = limiter.acquire("k", PLAN, cost=2)
    assert (refused.allowed, refused.remaining, refused.retry_after) == (False, 1, pytest.approx(1.0))


def test_leases_expire_after_the_period(sync_storage: Any, clock: ManualClock) -> None:
    """A slot never released (a crashed caller) comes back when its lease's TTL passes."""
    limiter = ConcurrencyAlgorithm(sync_storage)
    limiter.acquire("k", PLAN, cost=2)
    clock.advance(30 - 1e-6)
    assert not limiter.peek("k", PLAN).allowed
    clock.advance(1e-6)
    assert limiter.acquire("k", PLAN, cost=2)[0].allowed


def test_slot_releases_on_return_and_on_error(sync_storage: Any) -> None:
    """`with slot()` holds the slots for the body and gives them back however it exits."""
    limiter = ConcurrencyAlgorithm(sync_storage)
    with limiter.slot("k", PLAN) as lease:
        assert lease.result.allowed and lease.result.remaining == 1 and lease.key == "k"
        assert not limiter.peek("k", PLAN, cost=2).allowed
    assert limiter.peek("k", PLAN, cost=2).allowed
    with pytest.raises(KeyError), limiter.slot("k", PLAN, cost=2):
        raise KeyError("boom")
    assert limiter.peek("k", PLAN, cost=2).allowed


def test_slot_raises_rate_limit_exceeded_when_full(sync_storage: Any) -> None:
    """A full limit refuses `with slot()` with RateLimitExceeded carrying the result and key."""
    limiter = ConcurrencyAlgorithm(sync_storage)
    with limiter.slot("k", PLAN, cost=2):
        with pytest.raises(RateLimitExceeded) as caught, limiter.slot("k", PLAN):
            pytest.fail("the body must not run")  # pragma: no cover
    assert caught.value.key == "k"
    assert not caught.value.result.allowed and caught.value.retry_after == pytest.approx(30.0)
    assert limiter.peek("k", PLAN, cost=2).allowed  # the refused slot took nothing


def test_renew_extends_a_lease(sync_storage: Any, clock: ManualClock) -> None:
    """renew() pushes a held lease's expiry a full period from now, without a second slot."""
    limiter = ConcurrencyAlgorithm(sync_storage)
    _, token = limiter.acquire("k", PLAN)
    clock.advance(20)
    renewed = limiter.renew("k", PLAN, token)
    assert renewed.allowed and renewed.remaining == 1
    clock.advance(20)  # past the first expiry, inside the renewed one
    assert not limiter.peek("k", PLAN, cost=2).allowed


def test_calls_without_a_token_are_refused(sync_storage: Any) -> None:
    """check()/refund() cannot name a lease, so they raise instead of leaking a slot."""
    limiter = ConcurrencyAlgorithm(sync_storage)
    with pytest.raises(ValueError, match="token"):
        limiter.check("k", PLAN)
    with pytest.raises(ValueError, match="token"):
        limiter.refund("k", PLAN)
    with pytest.raises(TypeError, match="token"):
        limiter.release("k", PLAN, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        limiter.acquire("k", PLAN, cost=3)
    assert limiter.peek("k", PLAN, cost=2).allowed  # nothing was taken


# --- The Lua twin against the Python transition -----------------------------------------------

MODES = {"acquire": CONSUME, "release": REFUND, "peek": PEEK}


class Twins:
    """The same calls through the in-memory adapter (Python) and the real redis-server (Lua)."""

    def __init__(self, redis_client: redis.Redis, plans: list[Plan]) -> None:
        redis_client.flushdb()
        self.clock = ManualClock(LEASE_START)
        self.memory = InMemoryAdapter(clock=self.clock)
        self.remote = RedisSyncAdapter(redis_client, clock=self.clock)
        self.plans = plans
        self.keys = [f"limify:conc:{plan.id}" for plan in plans]

    def call(self, kind: str, token: str, cost: int) -> tuple[Any, ...]:
        """Run one call on both; they must agree; return the outcome."""
        check = Check(CONCURRENCY, tuple(self.keys), tuple(self.plans), cost, MODES[kind], token)
        expected = self.memory.execute(check)
        assert self.remote.execute(check) == expected, (kind, token, cost)
        return expected


@given(data=st.data(), plans=st.lists(lease_plans, min_size=1, max_size=2))
def test_python_and_lua_agree_on_lease_histories(
    redis_client: redis.Redis, data: st.DataObject, plans: list[Plan]
) -> None:
    """Acquire/renew/release/peek histories on a few tokens decide identically in memory and on Redis."""
    twins = Twins(redis_client, [Plan(f"p{i}", p.limit, p.period_seconds) for i, p in enumerate(plans)])
    smallest = min(twins.plans, key=lambda p: p.limit)
    timeline = LeaseTimeline(smallest)
    for kind, symbolic, cost, gap in data.draw(lease_histories(smallest, size=40)):
        twins.clock.set(timeline.advance(gap))
        token = timeline.token(symbolic)
        timeline.record(kind, token, twins.call(kind, token, cost)[0])


#: Hand-written histories (kind, token, cost, µs since the previous call) at the edges
#: random ones seldom reach, on a plan of 3 per second.
SCENARIOS = {
    "renew down to cost 1, then renew again": [
        ("acquire", "a", 2, 0), ("acquire", "a", 1, 1), ("acquire", "b", 1, 1),
        ("acquire", "a", 1, 1), ("peek", "x", 1, 0), ("acquire", "c", 2, 0),
    ],
    "release a cost-3 lease, take the token again at cost 1": [
        ("acquire", "a", 3, 0), ("release", "a", 1, 5), ("acquire", "a", 1, 0),
        ("acquire", "b", 2, 0), ("acquire", "c", 1, 0), ("release", "a", 3, 0), ("peek", "c", 3, 0),
    ],
    "refused while a lease expires this very microsecond": [
        ("acquire", "a", 1, 0), ("acquire", "b", 1, 1), ("acquire", "c", 1, 1),
        ("acquire", "d", 2, 999_998), ("acquire", "d", 1, 0), ("acquire", "e", 2, 0),
    ],
    "a refused renewal waits for other leases only": [
        ("acquire", "a", 1, 0), ("acquire", "b", 1, 1), ("acquire", "c", 1, 1),
        ("acquire", "a", 2, 5), ("acquire", "a", 3, 0), ("release", "b", 1, 0), ("acquire", "a", 3, 0),
    ],
    "releases of unknown, expired and twice-released tokens": [
        ("release", "zz", 1, 0), ("acquire", "a", 2, 0), ("release", "a", 2, 1_000_000),
        ("acquire", "b", 3, 0), ("release", "b", 1, 0), ("release", "b", 1, 0), ("peek", "", 3, 0),
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_python_and_lua_agree_on_edge_scenarios(redis_client: redis.Redis, name: str) -> None:
    """Each hand-written edge history decides identically in memory and on Redis."""
    twins = Twins(redis_client, [Plan("p", 3, 1)])
    for kind, token, cost, gap in SCENARIOS[name]:
        twins.clock.advance(us=gap)
        twins.call(kind, token, cost)


def test_python_and_lua_agree_with_hundreds_of_leases(redis_client: redis.Redis) -> None:
    """A limit of 500 held by leases of mixed costs and ages: long waits walk many leases alike."""
    twins = Twins(redis_client, [Plan("p", 500, 60)])
    admitted = []
    for n in range(300):
        twins.clock.advance(us=1_000 + n % 7)
        admitted.append(twins.call("acquire", f"t{n}", 1 + n % 3)[0])
    assert admitted.count(False) == 49  # costs 1, 2, 3 in turn: 499 held after 250, then one more 1
    for n in range(0, 300, 11):
        twins.call("release", f"t{n}", 1)
    refusals = [
        twins.call("acquire", holder, cost)[0] is False
        for cost in (1, 2, 17, 60, 250, 500)
        for holder in ("t5", "t150", "fresh")  # holding a lease early, late, or none
    ]
    assert all(refusals[-9:])  # costs 60, 250 and 500 wait for tens to hundreds of leases
    twins.clock.advance(59.7)  # the oldest leases have expired, the newest not yet
    for cost in (1, 40, 200, 500):
        twins.call("peek", "fresh", cost)
    twins.call("acquire", "t249", 100)
    twins.call("acquire", "fresh", 300)


def test_redis_state_is_one_sorted_set_expiring_with_its_last_lease(
    redis_client: redis.Redis, clock: ManualClock
) -> None:
    """On Redis the leases are one key, whose TTL is the last lease's expiry; releasing all deletes it."""
    limiter = ConcurrencyAlgorithm(RedisSyncAdapter(redis_client, clock=clock))
    _, first = limiter.acquire("limify:c", PLAN)
    clock.advance(10)
    result, second = limiter.acquire("limify:c", PLAN)
    assert redis_client.keys("*") == [b"limify:c"] and redis_client.type("limify:c") == b"zset"
    assert 29_000 < redis_client.pttl("limify:c") <= 30_000 == result.reset_after * 1000
    limiter.release("limify:c", PLAN, second)
    assert 19_000 < redis_client.pttl("limify:c") <= 20_000
    limiter.release("limify:c", PLAN, first)
    assert redis_client.exists("limify:c") == 0


def test_redis_work_per_call_does_not_grow_with_leases_held(redis_client: redis.Redis) -> None:
    """An acquire, a release and a refusal (3 short) run the same commands with 5 or 495 leases held."""
    limiter = ConcurrencyAlgorithm(RedisSyncAdapter(redis_client))
    plan = Plan("p", 500, 60)

    def commands_of(call: Any) -> dict[str, int]:
        redis_client.config_resetstat()
        call()
        stats = redis_client.info("commandstats")
        return {name: entry["calls"] for name, entry in stats.items() if name.startswith("cmdstat_z")}

    profiles = []
    for held in (5, 495):
        limiter.reset("busy")
        for _ in range(held):
            limiter.acquire("busy", plan)
        _, token = limiter.acquire("busy", plan)
        free = plan.limit - held - 1
        refused = commands_of(lambda free=free: limiter.acquire("busy", plan, cost=free + 3))
        released = commands_of(lambda token=token: limiter.release("busy", plan, token))
        acquired = commands_of(lambda: limiter.acquire("busy", plan))
        profiles.append((refused, released, acquired))
    assert profiles[0] == profiles[1]
