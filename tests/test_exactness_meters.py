"""Exactness under concurrency for the sliding log, leaky bucket and GCRA: 8 threads never over-admit."""

from __future__ import annotations

import threading

import pytest
import redis

from limify import InMemoryAdapter, ManualClock, Plan, rate_limit
from limify.core.algorithms.base import SyncAlgorithm
from limify.core.algorithms.gcra import GCRAAlgorithm
from limify.core.algorithms.leaky_bucket import LeakyBucketAlgorithm
from limify.core.algorithms.sliding_log import SlidingLogAlgorithm
from limify.core.clock import Clock
from limify.core.redis_adapter import RedisSyncAdapter
from tests.test_exactness import THREADS, admitted_by_tasks, hammer

ALGORITHMS = [SlidingLogAlgorithm, LeakyBucketAlgorithm, GCRAAlgorithm]
PLAN = Plan("default", 500, 60)


@pytest.mark.parametrize("algorithm_class", ALGORITHMS, ids=lambda cls: cls.spec.name)
def test_threads_in_memory_admit_exactly_the_limit(algorithm_class: type[SyncAlgorithm]) -> None:
    """On one in-memory key, with time pinned so nothing refills, exactly 500 of 8000 are admitted."""
    algorithm = algorithm_class(InMemoryAdapter(clock=ManualClock()))
    assert hammer(lambda: algorithm.check("limify:t:default", PLAN).allowed) == 500


def redis_hammer(url: str, algorithm_class: type[SyncAlgorithm], plan: Plan, clock: Clock | None) -> int:
    """hammer() with one client and one adapter per thread, as separate processes would have."""
    local = threading.local()

    def check() -> bool:
        if not hasattr(local, "algorithm"):
            local.algorithm = algorithm_class(RedisSyncAdapter(redis.Redis.from_url(url), clock=clock))
        return bool(local.algorithm.check("limify:t:default", plan).allowed)

    return hammer(check)


@pytest.mark.parametrize("algorithm_class", ALGORITHMS, ids=lambda cls: cls.spec.name)
def test_threads_on_redis_with_a_pinned_clock_admit_exactly_the_limit(
    redis_url: str, algorithm_class: type[SyncAlgorithm]
) -> None:
    """8 threads, each with its own client and the same pinned client clock, admit exactly 500."""
    assert redis_hammer(redis_url, algorithm_class, PLAN, ManualClock()) == 500


@pytest.mark.parametrize("algorithm_class", ALGORITHMS, ids=lambda cls: cls.spec.name)
def test_threads_on_redis_with_the_server_clock_admit_exactly_the_limit(
    redis_url: str, algorithm_class: type[SyncAlgorithm]
) -> None:
    """On the server's clock with 500 per day (far under one unit drains during the run), exactly 500."""
    assert redis_hammer(redis_url, algorithm_class, Plan("default", 500, 86400), None) == 500


@pytest.mark.parametrize("algorithm_class", ALGORITHMS, ids=lambda cls: cls.spec.name)
def test_threads_on_redis_with_skewed_client_clocks_admit_exactly_the_limit(
    redis_url: str, algorithm_class: type[SyncAlgorithm]
) -> None:
    """8 app servers whose clocks are 0-7 ms apart still admit exactly 500 (calls stamped ahead count)."""
    local = threading.local()
    next_offset = iter(range(THREADS))
    offsets_lock = threading.Lock()

    def check() -> bool:
        if not hasattr(local, "algorithm"):
            with offsets_lock:
                clock = ManualClock(1_700_000_000_000_000 + 1_000 * next(next_offset))
            local.algorithm = algorithm_class(RedisSyncAdapter(redis.Redis.from_url(redis_url), clock=clock))
        return bool(local.algorithm.check("limify:t:default", PLAN).allowed)

    assert hammer(check) == 500


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio needs asyncio."""
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("name", [cls.spec.name for cls in ALGORITHMS])
async def test_asyncio_tasks_on_redis_admit_exactly_the_limit(redis_url: str, name: str) -> None:
    """200 concurrent tasks x 40 attempts through the decorator (algorithm by name) admit exactly 500."""

    @rate_limit("500/day", algorithm=name, storage=redis_url)
    async def guarded() -> None:
        return None

    assert await admitted_by_tasks(guarded) == 500
