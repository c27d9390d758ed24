"""Redis adapters against the real server: key format, TTLs, clocks, NOSCRIPT recovery."""

from __future__ import annotations

import anyio
import pytest
import redis
import redis.asyncio
from freezegun import freeze_time

from limify import ManualClock, Plan, SystemClock
from limify.core.algorithms.token_bucket import AsyncTokenBucketAlgorithm, TokenBucketAlgorithm
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.servers import RedisServer

PLAN = Plan("default", 5, 60)


def test_refused_calls_write_nothing(redis_client: redis.Redis, clock: ManualClock) -> None:
    """A refusal leaves the stored state untouched."""
    algorithm = TokenBucketAlgorithm(RedisSyncAdapter(redis_client, clock=clock))
    algorithm.check("limify:k", PLAN, cost=5)
    before = redis_client.get("limify:k")
    assert not algorithm.check("limify:k", PLAN).allowed
    assert redis_client.get("limify:k") == before


def test_server_time_is_the_default_clock(redis_client: redis.Redis) -> None:
    """With no clock the script reads Redis TIME: the stored stamp is the server's time."""
    adapter = RedisSyncAdapter(redis_client)
    TokenBucketAlgorithm(adapter).check("limify:k", PLAN)
    seconds, micros = redis_client.time()
    stamp = int(redis_client.get("limify:k").decode().split(":")[1])
    assert 0 <= seconds * 1_000_000 + micros - stamp < 5_000_000


def test_client_clock_follows_freezegun(redis_client: redis.Redis) -> None:
    """With the system clock sent from the client, freezegun moves Redis decisions in time."""
    algorithm = TokenBucketAlgorithm(RedisSyncAdapter(redis_client, clock=SystemClock()))
    with freeze_time("2030-01-01 00:00:00") as frozen:
        assert all(algorithm.check("limify:k", PLAN).allowed for _ in range(5))
        refused = algorithm.check("limify:k", PLAN)
        assert not refused.allowed and refused.retry_after == pytest.approx(12.0)
        frozen.tick(12)
        assert algorithm.check("limify:k", PLAN).allowed


def test_script_flush_is_recovered_transparently(redis_client: redis.Redis, clock: ManualClock) -> None:
    """After SCRIPT FLUSH the adapter reloads its script; callers see no NOSCRIPT."""
    algorithm = TokenBucketAlgorithm(RedisSyncAdapter(redis_client, clock=clock))
    assert algorithm.check("limify:k", PLAN).allowed
    redis_client.script_flush()
    assert algorithm.check("limify:k", PLAN).remaining == 3


def test_seed_style_script_load_and_evalsha(redis_client: redis.Redis) -> None:
    """script_load/evalsha work as in the seed, and evalsha survives a flush of a loaded script."""
    adapter = RedisSyncAdapter(redis_client)
    sha = adapter.script_load("return tonumber(ARGV[1]) + 1")
    assert adapter.evalsha(sha, 0, 41) == 42
    redis_client.script_flush()
    assert adapter.evalsha(sha, 0, 1) == 2


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio runs on asyncio only."""
    return "asyncio"


@pytest.mark.anyio
async def test_async_adapter_on_a_user_client(redis_url: str, clock: ManualClock) -> None:
    """RedisAsyncAdapter on a redis.asyncio client decides like the sync one and recovers NOSCRIPT."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        algorithm = AsyncTokenBucketAlgorithm(RedisAsyncAdapter(client, clock=clock))
        results = [await algorithm.check("limify:a", PLAN) for _ in range(6)]
        assert [r.allowed for r in results] == [True] * 5 + [False]
        await client.script_flush()
        clock.advance(12)
        assert (await algorithm.check("limify:a", PLAN)).allowed
        assert await algorithm.peek("limify:a", PLAN) == (await algorithm.peek("limify:a", PLAN))
        await algorithm.reset("limify:a")
        assert await client.exists("limify:a") == 0
    finally:
        await client.aclose()


def test_url_adapter_serves_successive_event_loops(redis_url: str) -> None:
    """An adapter built from a URL opens a client per event loop, so several loops can use it."""
    algorithm = AsyncTokenBucketAlgorithm(RedisAsyncAdapter.from_url(redis_url))
    plan = Plan("default", 3, 3600)
    for expected in (True, True, True, False):
        assert anyio.run(algorithm.check, "limify:loops", plan).allowed is expected


def test_url_adapter_under_trio_explains_itself(redis_url: str) -> None:
    """redis.asyncio cannot run on trio: the error says so and what to use instead."""
    algorithm = AsyncTokenBucketAlgorithm(RedisAsyncAdapter.from_url(redis_url))
    with pytest.raises(RuntimeError, match="trio"):
        anyio.run(algorithm.check, "limify:trio", PLAN, backend="trio")


def test_unreachable_server_raises_storage_error(doomed_redis: RedisServer) -> None:
    """A server that is gone surfaces as limify.StorageError, quickly, not a hang."""
    import time

    from limify import StorageError

    algorithm = TokenBucketAlgorithm(RedisSyncAdapter.from_url(doomed_redis.url, socket_timeout=0.5))
    assert algorithm.check("limify:gone", PLAN).allowed
    doomed_redis.stop()
    started = time.monotonic()
    with pytest.raises(StorageError, match="unreachable"):
        algorithm.check("limify:gone", PLAN)
    assert time.monotonic() - started < 5


def test_unix_socket_url_reaches_a_real_server() -> None:
    """storage='unix:///path/redis.sock' works for sync and async callables."""
    import asyncio
    import os

    from limify import RateLimitExceeded, rate_limit

    server = RedisServer()
    socket_path = os.path.join(server.dir, "redis.sock")
    server.extra_args = ("--unixsocket", socket_path, "--unixsocketperm", "700")
    server.start()
    try:
        url = f"unix://{socket_path}?db=0"

        @rate_limit("2/hour", storage=url, name="unix-sync")
        def sync_call() -> None:
            return None

        @rate_limit("1/hour", storage=url, name="unix-async")
        async def async_call() -> None:
            return None

        sync_call()
        sync_call()
        with pytest.raises(RateLimitExceeded):
            sync_call()

        async def twice() -> None:
            await async_call()
            with pytest.raises(RateLimitExceeded):
                await async_call()

        asyncio.run(twice())
        probe = redis.Redis(unix_socket_path=socket_path)
        assert probe.exists("limify:unix-sync:default") == 1
        probe.close()
    finally:
        server.stop()
