"""Coalesced async checks: concurrent calls share round trips, and decide exactly as one call each."""

from __future__ import annotations

import time

import anyio
import pytest
import redis

from limify import ManualClock, Plan, StorageError
from limify.core.algorithms import ALGORITHMS
from limify.core.redis_adapter import RedisAsyncAdapter
from tests.frozen import frozen
from tests.servers import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio needs asyncio."""
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(set(ALGORITHMS) - {"concurrency"}))
async def test_concurrent_checks_are_batched_and_exact(redis_url: str, name: str) -> None:
    """300 simultaneous checks at limit 100 on one client: pipelined, exactly 100 admitted, in order.

    Each admitted call sees a distinct `remaining`, as if the calls ran one after another.
    """
    clock = ManualClock()
    adapter = RedisAsyncAdapter.from_url(redis_url, clock=clock)
    shell = ALGORITHMS[name][1](adapter)
    plan = Plan("default", 100, 86400)
    results = []

    async def check() -> None:
        results.append(await shell.check(f"limify:coalesce:{name}", plan))

    async with anyio.create_task_group() as group:
        for _ in range(300):
            group.start_soon(check)
    admitted = [r for r in results if r.allowed]
    assert len(admitted) == 100
    assert sorted(r.remaining for r in admitted) == list(range(100))
    client = await adapter._client()
    batcher = adapter._batchers[client]
    assert batcher.pipelines >= 1 and batcher.batched_calls >= 200  # most calls shared round trips


@pytest.mark.anyio
async def test_script_flush_inside_a_batch_is_recovered(redis_url: str) -> None:
    """A NOSCRIPT answer for calls inside a pipeline is recovered per call; callers see none."""
    adapter = RedisAsyncAdapter.from_url(redis_url, clock=ManualClock())
    shell = ALGORITHMS["token_bucket"][1](adapter)
    plan = Plan("default", 1000, 3600)
    await shell.check("limify:flush", plan)  # loads the script
    redis.Redis.from_url(redis_url).script_flush()
    results = []

    async def check() -> None:
        results.append(await shell.check("limify:flush", plan))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(check)
    assert len(results) == 50 and all(r.allowed for r in results)
    assert sorted(r.remaining for r in results) == list(range(949, 999))


@pytest.mark.anyio
async def test_coalescing_can_be_turned_off(redis_url: str) -> None:
    """coalesce=False sends one EVALSHA per check, with the same decisions."""
    adapter = RedisAsyncAdapter.from_url(redis_url, clock=ManualClock(), coalesce=False)
    shell = ALGORITHMS["token_bucket"][1](adapter)
    results = []

    async def check() -> None:
        results.append(await shell.check("limify:direct", Plan("default", 10, 3600)))

    async with anyio.create_task_group() as group:
        for _ in range(30):
            group.start_soon(check)
    assert sum(r.allowed for r in results) == 10
    assert adapter._batchers.get(await adapter._client()) is None


@pytest.mark.anyio
async def test_calls_queued_behind_a_round_trip_that_times_out_fail_with_it(
    doomed_redis: RedisServer,
) -> None:
    """A stopped server: checks queued behind the timed-out round trip fail at once, never sent themselves."""
    adapter = RedisAsyncAdapter.from_url(doomed_redis.url + "?socket_timeout=1&socket_connect_timeout=1")
    shell = ALGORITHMS["token_bucket"][1](adapter)
    plan = Plan("default", 1000, 3600)
    await shell.check("limify:frozen", plan)  # connects and loads the script
    batcher = adapter._batchers[await adapter._client()]
    took: list[float] = []

    async def check() -> None:
        started = time.monotonic()
        with pytest.raises(StorageError):
            await shell.check("limify:frozen", plan)
        took.append(time.monotonic() - started)

    with frozen(doomed_redis):
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(check)
    assert len(took) == 20
    assert batcher.pipelines == 0  # the queued checks were never sent
    assert max(took) < 1.0 + 0.5  # one socket timeout, not two
