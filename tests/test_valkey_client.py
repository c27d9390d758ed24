"""valkey-py clients (redis-py's API-compatible fork) drive both Redis adapters on a real server."""

from __future__ import annotations

import asyncio

import pytest
import valkey
import valkey.asyncio

from limify import ManualClock, Plan, StorageError
from limify.core.algorithms.token_bucket import AsyncTokenBucketAlgorithm, TokenBucketAlgorithm
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.servers import RedisServer

PLAN = Plan("p", 3, 60)
TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def test_valkey_clients_decide_recover_from_noscript_and_report_a_dead_server(
    doomed_redis: RedisServer,
) -> None:
    """valkey.Valkey and valkey.asyncio.Valkey: exact decisions, NOSCRIPT survived, StorageError if killed."""
    server = doomed_redis
    clock = ManualClock()
    client = valkey.Valkey.from_url(server.url, **TIMEOUTS)
    sync = TokenBucketAlgorithm(RedisSyncAdapter(client, clock=clock))

    async def run_async(after_kill: bool) -> list[bool]:
        async_client = valkey.asyncio.Valkey.from_url(server.url, **TIMEOUTS)
        shell = AsyncTokenBucketAlgorithm(RedisAsyncAdapter(async_client, clock=clock))
        try:
            if after_kill:
                with pytest.raises(StorageError):
                    await shell.check("limify:valkey-async", PLAN)
                return []
            decisions = [(await shell.check("limify:valkey-async", PLAN)).allowed for _ in range(2)]
            await async_client.script_flush()
            decisions += [(await shell.check("limify:valkey-async", PLAN)).allowed for _ in range(2)]
            return decisions
        finally:
            await async_client.aclose()

    try:
        decisions = [sync.check("limify:valkey", PLAN).allowed for _ in range(2)]
        client.script_flush()  # the next EVALSHA gets NOSCRIPT, as after a restart
        decisions += [sync.check("limify:valkey", PLAN).allowed for _ in range(2)]
        assert decisions == [True, True, True, False]
        assert asyncio.run(run_async(after_kill=False)) == [True, True, True, False]
        server.kill()
        with pytest.raises(StorageError):
            sync.check("limify:valkey", PLAN)
        asyncio.run(run_async(after_kill=True))
    finally:
        client.close()
