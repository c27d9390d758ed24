"""The in-memory adapter: expiry, the max_keys bound, and use from sync and async code."""

from __future__ import annotations

import threading

import pytest

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms.token_bucket import AsyncTokenBucketAlgorithm, TokenBucketAlgorithm

PLAN = Plan("default", 2, 10)


def test_idle_keys_expire_once_their_bucket_is_full(clock: ManualClock) -> None:
    """A key's state is dropped when it is full again; no timer thread does it."""
    threads_before = threading.active_count()
    adapter = InMemoryAdapter(clock=clock)
    algorithm = TokenBucketAlgorithm(adapter)
    algorithm.check("a", PLAN)
    assert len(adapter) == 1
    clock.advance(5)  # refilled to full at exactly 5 s
    algorithm.check("b", PLAN)  # a new key sweeps expired ones from the old end
    assert len(adapter) == 1
    assert threading.active_count() == threads_before


def test_max_keys_bounds_memory_evicting_least_recently_used(clock: ManualClock) -> None:
    """Past max_keys the least recently used key goes; recently used ones stay."""
    adapter = InMemoryAdapter(max_keys=3, clock=clock)
    algorithm = TokenBucketAlgorithm(adapter)
    for key in "abc":
        algorithm.check(key, PLAN)
    algorithm.check("a", PLAN)  # touch a: b is now the least recently used
    algorithm.check("d", PLAN)
    assert len(adapter) == 3
    assert not algorithm.peek("a", PLAN).allowed  # kept its state: both tokens spent
    assert algorithm.peek("b", PLAN).remaining == 1  # evicted: fresh again, 2 - 1


def test_reset_forgets_a_key(clock: ManualClock) -> None:
    """reset() gives the key a fresh limit."""
    algorithm = TokenBucketAlgorithm(InMemoryAdapter(clock=clock))
    algorithm.check("k", PLAN, cost=2)
    assert not algorithm.check("k", PLAN).allowed
    algorithm.reset("k")
    assert algorithm.check("k", PLAN).allowed


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_keys_must_be_a_positive_int(bad: object) -> None:
    """A bad max_keys is refused at construction."""
    with pytest.raises((TypeError, ValueError), match="max_keys"):
        InMemoryAdapter(max_keys=bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_one_adapter_serves_sync_and_async_callers(clock: ManualClock) -> None:
    """The same adapter object backs sync and async algorithms, sharing state."""
    adapter = InMemoryAdapter(clock=clock)
    TokenBucketAlgorithm(adapter).check("shared", PLAN)
    result = await AsyncTokenBucketAlgorithm(adapter).check("shared", PLAN)
    assert result.allowed and result.remaining == 0
    assert not (await AsyncTokenBucketAlgorithm(adapter).check("shared", PLAN)).allowed


def test_freezegun_moves_the_decorated_fast_path_on_the_system_clock() -> None:
    """The runner reads the system clock itself (no frame per call); freezegun's travel still applies."""
    from freezegun import freeze_time

    from limify import RateLimitExceeded, rate_limit

    with freeze_time("2030-01-01 00:00:00") as frozen:

        @rate_limit("1/minute", key="user", storage=InMemoryAdapter(), cache_refusals=False)
        def call(user: str) -> str:
            return user

        assert call("a") == "a"
        with pytest.raises(RateLimitExceeded) as refused:
            call("a")
        assert refused.value.retry_after == pytest.approx(60)
        frozen.tick(60)
        assert call("a") == "a"
