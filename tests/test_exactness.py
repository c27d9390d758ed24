"""Exactness under concurrency: threads (and asyncio tasks) never over-admit."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import anyio
import pytest
import redis

from limify import InMemoryAdapter, Plan, RateLimitExceeded, rate_limit
from limify.core.algorithms.token_bucket import TokenBucketAlgorithm
from limify.core.redis_adapter import RedisSyncAdapter

PLAN = Plan("default", 500, 3600)
THREADS, ATTEMPTS = 8, 1000


def hammer(check: Callable[[], bool]) -> int:
    """Run THREADS x ATTEMPTS checks, all released at once; return how many were admitted."""
    admitted = [0] * THREADS
    barrier = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        barrier.wait()
        admitted[index] = sum(check() for _ in range(ATTEMPTS))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(admitted)


def test_threads_in_memory_admit_exactly_the_limit() -> None:
    """8 threads x 1000 attempts at 500/hour on one in-memory key admit exactly 500."""
    algorithm = TokenBucketAlgorithm(InMemoryAdapter())
    assert hammer(lambda: algorithm.check("limify:t:default", PLAN).allowed) == 500


def test_threads_on_redis_admit_exactly_the_limit(redis_url: str) -> None:
    """8 threads, each with its own client (as separate processes would), admit exactly 500."""
    local = threading.local()

    def check() -> bool:
        if not hasattr(local, "algorithm"):
            local.algorithm = TokenBucketAlgorithm(RedisSyncAdapter(redis.Redis.from_url(redis_url)))
        return bool(local.algorithm.check("limify:t:default", PLAN).allowed)

    assert hammer(check) == 500


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_decorated_function_under_threads_admits_exactly_the_limit(
    storage: str, request: pytest.FixtureRequest
) -> None:
    """The decorator on a shared function keeps the same exactness as the algorithm."""
    url = "memory://" if storage == "memory" else request.getfixturevalue("redis_url")

    @rate_limit("500/hour", storage=InMemoryAdapter() if storage == "memory" else url)
    def guarded() -> None:
        return None

    def attempt() -> bool:
        try:
            guarded()
        except RateLimitExceeded:
            return False
        return True

    assert hammer(attempt) == 500


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio needs asyncio."""
    return "asyncio"


async def admitted_by_tasks(
    guarded: Callable[[], Awaitable[None]], tasks: int = 200, attempts: int = 40
) -> int:
    """Run ``tasks`` concurrent tasks of ``attempts`` calls each; return how many calls were admitted."""
    admitted = 0

    async def worker() -> None:
        nonlocal admitted
        for _ in range(attempts):
            try:
                await guarded()
                admitted += 1
            except RateLimitExceeded:
                pass

    async with anyio.create_task_group() as group:
        for _ in range(tasks):
            group.start_soon(worker)
    return admitted


@pytest.mark.anyio
async def test_asyncio_tasks_on_redis_admit_exactly_the_limit(redis_url: str) -> None:
    """200 concurrent tasks x 40 attempts on one async client admit exactly 500."""

    @rate_limit("500/hour", storage=redis_url)
    async def guarded() -> None:
        return None

    assert await admitted_by_tasks(guarded) == 500
