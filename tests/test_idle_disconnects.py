"""Connections the server closed while idle (its ``timeout`` setting) are replaced transparently.

Nothing was sent on such a connection, so replacing it is safe. redis.asyncio's pools
used to hand them out as if alive (redis-py 8 skips its own check when RESP3
maintenance notifications are on), and the next call on each failed: after 2 s idle
under ``timeout 1``, ten async calls on storage="redis://..." were all refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import valkey
import valkey.asyncio

from limify import rate_limit
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.servers import RedisClusterServers, RedisServer

IDLE = 2.2  # seconds without a call: the server (timeout 1) has closed every connection


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A redis-server closing client connections idle for more than a second."""
    own = RedisServer(None, "--timeout", "1").start()
    try:
        yield own
    finally:
        own.stop()


SYNC: dict[str, Callable[[RedisServer], Any]] = {
    "url": lambda server: server.url,
    "redis-py client": lambda server: RedisSyncAdapter(redis.Redis(port=server.port, socket_timeout=1)),
    "valkey-py client": lambda server: RedisSyncAdapter(valkey.Valkey(port=server.port, socket_timeout=1)),
    "single-connection client": lambda server: RedisSyncAdapter(
        redis.Redis(port=server.port, socket_timeout=1, single_connection_client=True)
    ),
}
ASYNC: dict[str, Callable[[RedisServer], Any]] = {
    "url": lambda server: server.url,
    "redis-py client": lambda server: RedisAsyncAdapter(
        redis.asyncio.Redis(port=server.port, socket_timeout=1)
    ),
    "valkey-py client": lambda server: RedisAsyncAdapter(
        valkey.asyncio.Valkey(port=server.port, socket_timeout=1)
    ),
    "url, no coalescing": lambda server: RedisAsyncAdapter.from_url(server.url, coalesce=False),
    "single-connection client": lambda server: RedisAsyncAdapter(
        redis.asyncio.Redis(port=server.port, socket_timeout=1, single_connection_client=True)
    ),
}


@pytest.mark.parametrize("kind", SYNC)
def test_sync_calls_after_an_idle_disconnect_all_succeed(server: RedisServer, kind: str) -> None:
    """Ten calls, then idle past the server's timeout, then ten more: all admitted."""

    @rate_limit(
        "1000/hour", storage=SYNC[kind](server), name=f"idle-sync-{kind}", on_storage_error="fail_closed"
    )
    def call() -> None:
        return None

    for _ in range(10):
        call()
    time.sleep(IDLE)
    for _ in range(10):
        call()
    assert call.rate_limit.peek().remaining == 1000 - 21


@pytest.mark.parametrize("kind", ASYNC)
def test_async_calls_after_an_idle_disconnect_all_succeed(server: RedisServer, kind: str) -> None:
    """The asyncio twin: one call at a time, a reset, then 50 at once (coalesced into pipelines)."""

    @rate_limit(
        "1000/hour", storage=ASYNC[kind](server), name=f"idle-async-{kind}", on_storage_error="fail_closed"
    )
    async def call() -> None:
        return None

    async def main() -> int:
        await asyncio.gather(*(call() for _ in range(10)))  # several connections in the pool
        await asyncio.sleep(IDLE)
        for _ in range(10):
            await call()
        await asyncio.sleep(IDLE)
        await call.rate_limit.reset()
        await asyncio.gather(*(call() for _ in range(50)))
        return (await call.rate_limit.peek()).remaining

    assert asyncio.run(main()) == 1000 - 51


@pytest.fixture(scope="module")
def idle_cluster() -> Iterator[RedisClusterServers]:
    """A private 3-master cluster whose nodes close connections idle for more than a second."""
    cluster = RedisClusterServers().start()
    try:
        for node in cluster.nodes:  # after `redis-cli --cluster create`, which holds idle connections
            client = redis.Redis(port=node.port)
            client.config_set("timeout", 1)
            client.close()
        yield cluster
    finally:
        cluster.stop()


def test_cluster_calls_after_an_idle_disconnect_all_succeed(idle_cluster: RedisClusterServers) -> None:
    """redis+cluster:// storage, sync and async, keys on every master: idle disconnects are invisible."""

    @rate_limit("1000/hour", storage=idle_cluster.url, key="user", name="idle-cluster")
    def call(user: int) -> None:
        return None

    @rate_limit("1000/hour", storage=idle_cluster.url, key="user", name="idle-acluster")
    async def acall(user: int) -> None:
        return None

    for user in range(10):
        call(user)
    time.sleep(IDLE)
    for user in range(10):
        call(user)

    async def main() -> None:
        await asyncio.gather(*(acall(user) for user in range(10)))
        await asyncio.sleep(IDLE)
        await acall.rate_limit.reset(3)
        for user in range(10):
            await acall(user)
        await asyncio.sleep(IDLE)
        await asyncio.gather(*(acall(user) for user in range(10)))
        assert (await acall.rate_limit.peek(3)).remaining == 1000 - 3

    asyncio.run(main())
