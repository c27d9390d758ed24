"""Sentinel failover under load: the master is SIGKILLed and the sentinels promote the replica.

Each test runs its own master, replica and three sentinels (down-after 1 s), so
that it can kill the master. While the sentinels notice and promote, callers get
the failure policy's answer, fast; once the replica is the master, traffic goes
to it: the limit's keys are written there again, and two separate clients share
one limit on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
import redis

from limify import RateLimitExceeded, rate_limit
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.load import TaskLoad, ThreadLoad
from tests.servers import SentinelServers

pytestmark = pytest.mark.slow

# Socket timeouts in the URL keep a dead master from stalling anyone for long.
TIMEOUTS = "?socket_timeout=0.5&socket_connect_timeout=0.5"
MARGIN = 1.5  # seconds on top of the socket timeout that a call may take while the master dies
#: What a call may answer while the storage is unreachable, per failure policy (see resilience.py).
POLICY_OUTCOMES = {"fail_open": {"ok"}, "local": {"ok", "refused"}}


@pytest.fixture
def sentinels() -> Iterator[SentinelServers]:
    """A private master + replica + 3 sentinels, since the test kills the master."""
    servers = SentinelServers().start()
    yield servers
    servers.stop()


def wait_until(predicate: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def kill_master_and_await_promotion(servers: SentinelServers) -> redis.Redis:
    """SIGKILL the master; return a client on the replica once the sentinels made it the master.

    The new master is then emptied, so that any key found on it later was written
    by a caller after the failover (not copied from the old master).
    """
    old, replica = servers.master, servers.replica
    assert servers.master_port() == old.port
    old.kill()
    wait_until(lambda: servers.master_port() == replica.port, "the sentinels to promote the replica")
    new_master = redis.Redis(port=replica.port)
    wait_until(lambda: new_master.role()[0] == b"master", "the replica to take the master role")
    new_master.flushall()
    return new_master


def assert_limit_shared_by_two_clients(servers: SentinelServers, new_master: redis.Redis, name: str) -> None:
    """Two adapters, each with its own Sentinel client, enforce one 5/hour limit together."""
    first = RedisSyncAdapter.from_url(servers.url + TIMEOUTS)
    second = RedisSyncAdapter.from_url(servers.url + TIMEOUTS)
    assert first.client is not second.client

    @rate_limit("5/hour", storage=first, name=name, on_storage_error="fail_closed")
    def via_first() -> None:
        return None

    @rate_limit("5/hour", storage=second, name=name, on_storage_error="fail_closed")
    def via_second() -> None:
        return None

    for call in (via_first, via_first, via_first, via_second, via_second):
        call()
    for call in (via_second, via_first):
        with pytest.raises(RateLimitExceeded):
            call()
    assert new_master.keys(f"limify:{name}:*")
    first.close()
    second.close()


@pytest.mark.parametrize("policy", sorted(POLICY_OUTCOMES))
def test_failover_under_thread_load(
    sentinels: SentinelServers, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Master killed under thread load: fast policy answers during the failover, the new master after."""
    caplog.set_level(logging.WARNING, logger="limify")
    name = f"failover-threads-{policy}"

    @rate_limit("1000000/second", storage=sentinels.url + TIMEOUTS, on_storage_error=policy, name=name)
    def call() -> None:
        return None

    def attempt() -> str:
        call()
        return "ok"

    with ThreadLoad(attempt) as load:
        load.wait_for_calls(100)
        new_master = kill_master_and_await_promotion(sentinels)
        wait_until(lambda: new_master.keys(f"limify:{name}:*"), "the load to write on the new master")
        load.wait_for_calls(100)
    assert "ok" in load.outcomes and set(load.outcomes) <= POLICY_OUTCOMES[policy], load.outcomes
    assert load.slowest < 0.5 + MARGIN
    messages = [record.getMessage() for record in caplog.records]
    # Logged once per switch, not per call: a failover may flap (down, up, down, up)
    # while the sentinels settle, but each way is one line per switch.
    down = sum("unreachable" in message for message in messages)
    up = sum("reachable again" in message for message in messages)
    assert 1 <= down <= 3 and up in (down, down - 1) and up >= 1, messages
    assert load.calls > 10 * down
    assert_limit_shared_by_two_clients(sentinels, new_master, f"{name}-after")
    new_master.close()


def test_failover_under_asyncio_load(sentinels: SentinelServers) -> None:
    """Master killed under 50 asyncio tasks ('local' policy): no error, no hang, the new master after."""
    name = "failover-asyncio"
    url = sentinels.url + TIMEOUTS

    @rate_limit("1000000/second", storage=url, on_storage_error="local", name=name)
    async def call() -> None:
        return None

    async def attempt() -> str:
        await call()
        return "ok"

    async def main() -> tuple[TaskLoad, redis.Redis]:
        async with TaskLoad(attempt) as load:
            await load.wait_for_calls_async(200)
            new_master = await asyncio.to_thread(kill_master_and_await_promotion, sentinels)
            deadline = time.monotonic() + 15
            while not new_master.keys(f"limify:{name}:*"):
                assert time.monotonic() < deadline, "the load did not write on the new master in 15s"
                await load.wait_for_calls_async(50)
            await load.wait_for_calls_async(200)
        await assert_async_limit_shared_by_two_clients(url, new_master, f"{name}-after")
        return load, new_master

    load, new_master = asyncio.run(main())
    assert "ok" in load.outcomes and set(load.outcomes) <= POLICY_OUTCOMES["local"], load.outcomes
    assert load.slowest < 0.5 + MARGIN
    new_master.close()


async def assert_async_limit_shared_by_two_clients(url: str, new_master: redis.Redis, name: str) -> None:
    """Two async adapters, each with its own redis.asyncio Sentinel client, enforce one 5/hour limit."""
    first, second = RedisAsyncAdapter.from_url(url), RedisAsyncAdapter.from_url(url)

    @rate_limit("5/hour", storage=first, name=name, on_storage_error="fail_closed")
    async def via_first() -> None:
        return None

    @rate_limit("5/hour", storage=second, name=name, on_storage_error="fail_closed")
    async def via_second() -> None:
        return None

    for call in (via_first, via_first, via_first, via_second, via_second):
        await call()
    for call in (via_second, via_first):
        with pytest.raises(RateLimitExceeded):
            await call()
    assert await first._client() is not await second._client()
    assert new_master.keys(f"limify:{name}:*")
