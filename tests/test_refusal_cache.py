"""Refusals known to hold are answered without a round trip, and forgotten when they may not hold.

The real server's command statistics count the scripts that reached it.
"""

from __future__ import annotations

import time

import pytest
import redis

from limify import (
    APPLICATION,
    InMemoryAdapter,
    Limify,
    LimifyConfig,
    ManualClock,
    Plan,
    RateLimitExceeded,
    RequestContext,
    Rule,
    rate_limit,
)

#: One call per 300 ms: a refusal holds for at most that long.
BRIEF = Plan("default", 1, 0.3)


def scripts_run(client: redis.Redis) -> int:
    """How many EVALSHA/EVAL the server has run so far."""
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def refused(call: object, *args: object) -> bool:
    """Whether calling ``call(*args)`` raised RateLimitExceeded."""
    try:
        call(*args)  # type: ignore[operator]
    except RateLimitExceeded:
        return True
    return False


def test_a_refused_flood_stays_in_process_until_the_retry_time(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """After one refusal, 50 more calls are refused without a script; after retry_after, the store decides again."""

    @rate_limit(BRIEF, key="user", storage=redis_url, name="cache.flood")
    def call(user: str) -> None:
        return None

    call("ann")
    assert refused(call, "ann")
    before = scripts_run(redis_client)
    assert all(refused(call, "ann") for _ in range(50))
    assert scripts_run(redis_client) == before
    assert not refused(call, "bob")  # another key asks the store
    time.sleep(0.31)
    assert not refused(call, "ann")


def test_a_reset_or_refund_through_this_process_forgets_the_refusal(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """fn.rate_limit.reset() and a refund_on refund make the next call ask the store again."""

    class Upstream(Exception):
        """The guarded call failed."""

    @rate_limit("1/hour", key="user", storage=redis_url, name="cache.reset", refund_on=Upstream)
    def call(user: str, fail: bool = False) -> None:
        if fail:
            raise Upstream

    call("ann")
    assert refused(call, "ann")
    call.rate_limit.reset("ann")  # type: ignore[attr-defined]
    call("ann")  # admitted at once: the cached refusal was forgotten
    assert refused(call, "ann")


def test_another_process_reset_is_seen_when_the_refusal_ends(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The documented exception: a reset made elsewhere (here a DEL) is not seen until retry_after."""

    @rate_limit(BRIEF, key="user", storage=redis_url, name="cache.elsewhere")
    def call(user: str) -> None:
        return None

    call("ann")
    assert refused(call, "ann")
    redis_client.delete(*call.rate_limit.keys("ann"))  # type: ignore[attr-defined]
    assert refused(call, "ann")  # still refused from the cache: never admitted beyond the limit
    time.sleep(0.31)
    assert not refused(call, "ann")


def test_cache_refusals_false_asks_the_store_every_time(redis_url: str, redis_client: redis.Redis) -> None:
    """With cache_refusals=False each refused call runs its script."""

    @rate_limit("1/hour", storage=redis_url, name="cache.off", cache_refusals=False)
    def call() -> None:
        return None

    call()
    before = scripts_run(redis_client)
    assert all(refused(call) for _ in range(5))
    assert scripts_run(redis_client) == before + 5


def test_leases_are_never_cached(redis_url: str, redis_client: redis.Redis) -> None:
    """A concurrency limit's refusal may end with any release: every refused attempt asks the store."""
    from limify.core.algorithms.concurrency import ConcurrencyAlgorithm
    from limify.core.redis_adapter import RedisSyncAdapter

    @rate_limit("1/minute", algorithm="concurrency", storage=redis_url, name="cache.lease")
    def held() -> None:
        return None

    (key,) = held.rate_limit.keys()  # type: ignore[attr-defined]
    ConcurrencyAlgorithm(RedisSyncAdapter(redis_client)).acquire(key, Plan("default", 1, 60))
    before = scripts_run(redis_client)
    assert all(refused(held) for _ in range(3))
    assert scripts_run(redis_client) == before + 3


def test_web_rules_refuse_a_flood_in_process(redis_url: str, redis_client: redis.Redis) -> None:
    """A web rule on Redis refuses repeated requests of a refused identity without scripts."""
    config = LimifyConfig([Rule("items", path="/items", rate="1/hour")])
    limiter = Limify(config=config, storage=redis_url).sync_limiter
    context = RequestContext("GET", "/items", user_id=7)
    assert limiter.decide(context).status == 200
    assert limiter.decide(context).status == 429
    before = scripts_run(redis_client)
    assert [limiter.decide(context).status for _ in range(20)] == [429] * 20
    assert scripts_run(redis_client) == before


def test_bad_cache_refusals_is_refused_at_decoration() -> None:
    """cache_refusals must be a bool."""
    with pytest.raises(TypeError, match="cache_refusals"):
        rate_limit("1/s", cache_refusals="yes")  # type: ignore[arg-type]


def test_in_memory_a_known_refusal_skips_the_store_and_clearing_the_key_forgets_it() -> None:
    """On an InMemoryAdapter a held refusal is answered without running the transition; adapter.clear() forgets it."""
    clock = ManualClock()
    store = InMemoryAdapter(clock=clock)

    @rate_limit("1/hour", key="user", storage=store, name="cache.memory")
    def call(user: str) -> None:
        return None

    call("ann")
    with pytest.raises(RateLimitExceeded) as first:
        call("ann")
    key = first.value.key
    store._data.pop(key)  # the store forgets the key behind the cache's back (as an eviction would)
    with pytest.raises(RateLimitExceeded) as held:
        call("ann")  # still refused: the refusal is known to hold until its retry_after
    assert held.value.retry_after == pytest.approx(first.value.retry_after)
    assert held.value.result.reset_after == pytest.approx(first.value.result.reset_after)
    store.clear([key])
    call("ann")  # cleared through the adapter: the store decides, afresh
    clock.advance(3600)
    call("ann")


def test_refusals_are_shared_by_every_limit_on_one_store(redis_url: str) -> None:
    """A web rule's reset forgets the refusal another engine (the application-wide limits) cached on its keys."""
    config = LimifyConfig(
        rules=[Rule("items", path="/items", rate="5/minute")], application_limits="2/minute"
    )
    limify = Limify(config=config, storage=redis_url)
    request = RequestContext("GET", "/items", client_ip="192.0.2.9")
    assert [limify.sync_limiter.decide(request).status for _ in range(3)] == [200, 200, 429]
    limify.reset("items", ("ip", "192.0.2.9"))
    limify.reset(APPLICATION, ("ip", "192.0.2.9"))
    assert limify.sync_limiter.decide(request).status == 200
