"""Concurrency limit under real concurrency: threads, a crashed process, asyncio and trio tasks."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from limify import InMemoryAdapter, Plan, RateLimitExceeded
from limify.core.algorithms.concurrency import AsyncConcurrencyAlgorithm, ConcurrencyAlgorithm
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.children import child_env

PLAN = Plan("default", 3, 60)
THREADS, ATTEMPTS = 8, 1000


class InFlight:
    """Counts the bodies running at once, under its own lock, and remembers the most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.entered = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.entered += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def hammer(slot: Callable[[], AbstractContextManager[Any]]) -> InFlight:
    """THREADS threads, released at once, each entering ``with slot()`` ATTEMPTS times."""
    seen = InFlight()
    barrier = threading.Barrier(THREADS)

    def worker() -> None:
        barrier.wait()
        for _ in range(ATTEMPTS):
            try:
                with slot():
                    seen.enter()
                    time.sleep(0)  # let the other threads run while this one holds a slot
                    seen.leave()
            except RateLimitExceeded:
                pass

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def test_threads_in_memory_never_exceed_the_limit() -> None:
    """8 threads x 1000 `with slot()` on one in-memory key: never more than 3 bodies at once."""
    limiter = ConcurrencyAlgorithm(InMemoryAdapter())
    seen = hammer(lambda: limiter.slot("limify:c", PLAN))
    assert 0 < seen.most <= PLAN.limit and seen.entered > 0
    assert limiter.peek("limify:c", PLAN, cost=3).allowed  # every slot came back


@pytest.mark.slow
def test_threads_on_redis_never_exceed_the_limit(redis_url: str) -> None:
    """8 threads, a Redis client each (as separate processes would): never more than 3 at once."""
    local = threading.local()

    def slot() -> AbstractContextManager[Any]:
        if not hasattr(local, "limiter"):
            local.limiter = ConcurrencyAlgorithm(RedisSyncAdapter(redis.Redis.from_url(redis_url)))
        return local.limiter.slot("limify:c", PLAN)

    seen = hammer(slot)
    assert 0 < seen.most <= PLAN.limit and seen.entered > 0
    assert redis.Redis.from_url(redis_url).exists("limify:c") == 0  # every lease released


HOLDER = """
import sys, redis
from limify import Plan
from limify.core.algorithms.concurrency import ConcurrencyAlgorithm
from limify.core.redis_adapter import RedisSyncAdapter

limiter = ConcurrencyAlgorithm(RedisSyncAdapter(redis.Redis.from_url(sys.argv[1])))
plan = Plan("default", 3, float(sys.argv[2]))
for _ in range(2):
    assert limiter.acquire("limify:crash", plan)[0].allowed
print("holding", flush=True)
sys.stdin.read()  # hold the slots until killed
"""


def test_slots_of_a_killed_process_come_back_when_their_leases_expire(redis_url: str, tmp_path: Path) -> None:
    """A process SIGKILLed while holding 2 of 3 slots: they stay taken until the lease TTL, then return."""
    ttl = 1.5  # seconds: short, yet long enough for a loaded machine to look before it passes
    command = [sys.executable, "-c", HOLDER, redis_url, str(ttl)]
    with subprocess.Popen(
        command, cwd=tmp_path, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"holding\n"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
    assert child.returncode == -signal.SIGKILL
    limiter = ConcurrencyAlgorithm(RedisSyncAdapter(redis.Redis.from_url(redis_url)))
    plan = Plan("default", 3, ttl)
    refused, _ = limiter.acquire("limify:crash", plan, cost=2)
    assert not refused.allowed and 0 < refused.retry_after <= ttl
    assert limiter.peek("limify:crash", plan).allowed  # the third slot was never taken
    time.sleep(refused.retry_after + 0.05)
    back, _ = limiter.acquire("limify:crash", plan, cost=3)
    assert back.allowed and back.remaining == 0


# --- async: asyncio and trio in memory, asyncio on Redis ----------------------------------------


async def check_async_slot(limiter: AsyncConcurrencyAlgorithm) -> None:
    """`async with slot()` holds, releases on return, error and cancellation, and refuses when full."""
    plan = Plan("default", 2, 60)
    async with limiter.slot("k", plan) as lease:
        assert lease.result.allowed and lease.result.remaining == 1
        assert not (await limiter.peek("k", plan, cost=2)).allowed
    assert (await limiter.peek("k", plan, cost=2)).allowed
    with pytest.raises(KeyError):
        async with limiter.slot("k", plan, cost=2):
            raise KeyError("boom")
    with anyio.move_on_after(0.05):
        async with limiter.slot("k", plan, cost=2):
            await anyio.sleep(10)  # cancelled here; the release must still happen
    async with limiter.slot("k", plan, cost=2):
        with pytest.raises(RateLimitExceeded) as caught:
            async with limiter.slot("k", plan):
                pytest.fail("the body must not run")  # pragma: no cover
        assert caught.value.key == "k" and caught.value.retry_after > 0
    result, token = await limiter.acquire("k", plan)
    assert result.allowed
    await limiter.release("k", plan, token)
    assert (await limiter.peek("k", plan, cost=2)).allowed


async def run_tasks(limiter: AsyncConcurrencyAlgorithm, tasks: int = 40, attempts: int = 25) -> InFlight:
    """Many tasks entering ``async with slot()`` and yielding inside it."""
    seen = InFlight()

    async def worker() -> None:
        for _ in range(attempts):
            try:
                async with limiter.slot("limify:tasks", PLAN):
                    seen.enter()
                    await anyio.sleep(0)
                    seen.leave()
            except RateLimitExceeded:
                await anyio.sleep(0)

    async with anyio.create_task_group() as group:
        for _ in range(tasks):
            group.start_soon(worker)
    return seen


@pytest.mark.anyio
async def test_async_slot_in_memory() -> None:
    """The async shell's `async with` on memory, on asyncio and trio."""
    await check_async_slot(AsyncConcurrencyAlgorithm(InMemoryAdapter()))


@pytest.mark.anyio
async def test_async_tasks_in_memory_never_exceed_the_limit() -> None:
    """40 tasks x 25 `async with slot()`: at most 3 bodies at once, and the limit is reached."""
    seen = await run_tasks(AsyncConcurrencyAlgorithm(InMemoryAdapter()))
    assert seen.most == PLAN.limit


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_slot_on_redis(redis_async_adapter: RedisAsyncAdapter) -> None:
    """The async shell's `async with` on redis.asyncio."""
    await check_async_slot(AsyncConcurrencyAlgorithm(redis_async_adapter))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_tasks_on_redis_never_exceed_the_limit(redis_async_adapter: RedisAsyncAdapter) -> None:
    """40 asyncio tasks sharing one redis.asyncio adapter: at most 3 bodies at once, all released."""
    limiter = AsyncConcurrencyAlgorithm(redis_async_adapter)
    seen = await run_tasks(limiter)
    assert 0 < seen.most <= PLAN.limit
    assert (await limiter.peek("limify:tasks", PLAN, cost=3)).allowed
