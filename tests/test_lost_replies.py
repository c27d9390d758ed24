"""A script whose reply was lost is never sent again, whatever retries the client was built with.

redis-py 8 clients retry by default (10 times, with backoff), and re-send the command
whose connection failed: a lost reply to an EVALSHA ran the script twice (one call
counted twice, a refund given back twice), and on a stopped server each attempt waited
for its own timeout. A proxy between client and server (tests/lossy_proxy.py) lets the
request through and loses the reply; the server's own state then tells how many times
the script ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.backoff
import redis.cluster
import redis.retry
import valkey
import valkey.asyncio
from valkey.backoff import NoBackoff
from valkey.retry import Retry

from limify import StorageError, rate_limit
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.frozen import frozen
from tests.lossy_proxy import LossyProxy, lossy_proxy
from tests.servers import RedisServer

TIMEOUT = 1.0  # the clients' socket_timeout
MARGIN = 0.75  # what a failing call may take beyond it


class Upstream(Exception):
    """What a refunded call raises."""


@pytest.fixture
def proxy(doomed_redis: RedisServer) -> Iterator[LossyProxy]:
    with lossy_proxy(doomed_redis.port) as own:
        yield own


@pytest.fixture
def direct(doomed_redis: RedisServer) -> Iterator[redis.Redis]:
    """A client straight to the server, to read what the scripts did."""
    client = redis.Redis(port=doomed_redis.port, decode_responses=True)
    yield client
    client.close()


def count(direct: redis.Redis, name: str) -> int:
    """Calls counted in a fixed window limit ``name`` (state "window_start:count")."""
    raw = direct.get(f"limify:{name}:default")
    return int(raw.split(":")[1]) if raw else 0


# Clients users build themselves; each retries on connection errors and timeouts (redis-py
# 8 does by default, 5.x only when told to).
RETRY_ON: dict[str, Any] = {"retry_on_error": [redis.ConnectionError, redis.TimeoutError]}
SYNC_CLIENTS: dict[str, Callable[[int], Any]] = {
    "redis-py defaults": lambda port: redis.Redis(port=port, socket_timeout=TIMEOUT),
    "redis-py with retries": lambda port: redis.Redis(
        port=port, socket_timeout=TIMEOUT, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 5), **RETRY_ON
    ),
    "valkey-py with retries": lambda port: valkey.Valkey(
        port=port,
        socket_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 5),
        retry_on_error=[valkey.ConnectionError, valkey.TimeoutError],
    ),
}
ASYNC_CLIENTS: dict[str, Callable[[int], Any]] = {
    "redis-py defaults": lambda port: redis.asyncio.Redis(port=port, socket_timeout=TIMEOUT),
    "redis-py with retries": lambda port: redis.asyncio.Redis(
        port=port,
        socket_timeout=TIMEOUT,
        retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 5),
        **RETRY_ON,
    ),
    "valkey-py with retries": lambda port: valkey.asyncio.Valkey(
        port=port,
        socket_timeout=TIMEOUT,
        retry=valkey.asyncio.retry.Retry(NoBackoff(), 5),
        retry_on_error=[valkey.ConnectionError, valkey.TimeoutError],
    ),
}


def sync_storage(kind: str, proxy: LossyProxy) -> Any:
    if kind == "url":
        return RedisSyncAdapter.from_url(proxy.url, socket_timeout=TIMEOUT)
    return RedisSyncAdapter(SYNC_CLIENTS[kind](proxy.port))


def async_storage(kind: str, proxy: LossyProxy, **options: Any) -> Any:
    if kind == "url":
        return RedisAsyncAdapter.from_url(proxy.url, socket_timeout=TIMEOUT, **options)
    return RedisAsyncAdapter(ASYNC_CLIENTS[kind](proxy.port), **options)


KINDS = ["url", *SYNC_CLIENTS]


@pytest.mark.parametrize("then", ["close", "stall"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_lost_reply_counts_the_call_once_and_raises_storage_error(
    kind: str, then: str, proxy: LossyProxy, direct: redis.Redis
) -> None:
    """The call whose reply is lost gets StorageError (fail_closed) within its timeout, counted once."""
    name = f"lost-{kind}-{then}".replace(" ", "_")

    @rate_limit("5/hour", algorithm="fixed_window", storage=sync_storage(kind, proxy), name=name)
    def call() -> None:
        return None

    call()
    proxy.lose_next_reply(then=then)
    started = time.monotonic()
    with pytest.raises(StorageError):
        call()
    assert time.monotonic() - started < TIMEOUT + MARGIN
    assert proxy.lost == 1
    assert count(direct, name) == 2  # ran on the server once, not once per retry


@pytest.mark.parametrize("policy", ["fail_open", "local"])
@pytest.mark.parametrize("kind", ["url", "redis-py with retries"])
def test_a_lost_reply_gets_the_failure_policy_s_answer_counted_once(
    kind: str, policy: str, proxy: LossyProxy, direct: redis.Redis
) -> None:
    """Under fail_open and local, the call whose reply is lost is admitted by the policy within
    its timeout, and the script it sent still ran once on the server (never re-sent)."""
    name = f"lost-{policy}-{kind}".replace(" ", "_")

    @rate_limit(
        "5/hour", algorithm="fixed_window", storage=sync_storage(kind, proxy), name=name,
        on_storage_error=policy,
    )  # fmt: skip
    def call() -> str:
        return "ran"

    assert call() == "ran"
    proxy.lose_next_reply()
    started = time.monotonic()
    assert call() == "ran"  # the policy's answer: admitted (fail_open) or by the local store
    assert time.monotonic() - started < TIMEOUT + MARGIN
    assert proxy.lost == 1
    assert count(direct, name) == 2  # ran on the server once, not once per retry


@pytest.mark.parametrize("kind", KINDS)
def test_a_lost_reply_to_a_refund_gives_the_cost_back_once(
    kind: str, proxy: LossyProxy, direct: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """5/hour: four calls, a fifth refunded whose reply is lost: 4 counted, not 3 (6 calls kept)."""
    name = f"refund-{kind}".replace(" ", "_")

    @rate_limit(
        "5/hour", algorithm="fixed_window", storage=sync_storage(kind, proxy), name=name, refund_on=Upstream
    )
    def call(fail: bool = False) -> None:
        if fail:
            proxy.lose_next_reply()  # the next script is this call's refund
            raise Upstream()

    for _ in range(4):
        call()
    with pytest.raises(Upstream):
        call(fail=True)
    assert proxy.lost == 1
    assert count(direct, name) == 4
    assert any("could not give back" in record.getMessage() for record in caplog.records)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("then", ["close", "stall"])
@pytest.mark.parametrize("coalesce", [True, False])
@pytest.mark.parametrize("kind", KINDS)
async def test_async_lost_reply_counts_the_call_once(
    kind: str, coalesce: bool, then: str, proxy: LossyProxy, direct: redis.Redis
) -> None:
    """The asyncio adapters, with and without coalescing: StorageError, the script ran once."""
    name = f"alost-{kind}-{coalesce}-{then}".replace(" ", "_")

    @rate_limit(
        "5/hour", algorithm="fixed_window", storage=async_storage(kind, proxy, coalesce=coalesce), name=name
    )
    async def call() -> None:
        return None

    await call()
    proxy.lose_next_reply(then=then)
    started = time.monotonic()
    with pytest.raises(StorageError):
        await call()
    assert time.monotonic() - started < TIMEOUT + MARGIN
    assert proxy.lost == 1
    assert count(direct, name) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_lost_reply_to_a_coalesced_pipeline_counts_each_call_once(
    kind: str, proxy: LossyProxy, direct: redis.Redis
) -> None:
    """Twenty concurrent checks: one goes alone, the others in one pipeline whose reply is lost.

    Each of those scripts ran once: the pipeline is not sent again either.
    """
    name = f"pipeline-{kind}".replace(" ", "_")

    @rate_limit("1000/hour", algorithm="fixed_window", storage=async_storage(kind, proxy), name=name)
    async def call() -> None:
        return None

    await call()
    proxy.lose_next_reply(skip=1)  # the first check goes alone; the pipeline after it loses its reply
    outcomes = await asyncio.gather(*(call() for _ in range(20)), return_exceptions=True)
    failed = [outcome for outcome in outcomes if isinstance(outcome, StorageError)]
    assert proxy.lost == 1
    assert len(failed) == 19 and outcomes.count(None) == 1, outcomes
    assert count(direct, name) == 21


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_async_lost_reply_to_a_refund_gives_the_cost_back_once(
    kind: str, proxy: LossyProxy, direct: redis.Redis
) -> None:
    """The asyncio twin of the refund case."""
    name = f"arefund-{kind}".replace(" ", "_")

    @rate_limit(
        "5/hour", algorithm="fixed_window", storage=async_storage(kind, proxy), name=name, refund_on=Upstream
    )
    async def call(fail: bool = False) -> None:
        if fail:
            proxy.lose_next_reply()
            raise Upstream()

    for _ in range(4):
        await call()
    with pytest.raises(Upstream):
        await call(fail=True)
    assert proxy.lost == 1
    assert count(direct, name) == 4


def test_a_stopped_server_costs_a_caller_one_timeout(doomed_redis: RedisServer) -> None:
    """SIGSTOP: the call in flight, then the probe on a fresh connection, each take one timeout (not 15 s).

    A redis-py 8 client with socket_timeout=1 used to hold each call 15 s (11 attempts).
    """

    @rate_limit(
        "100/hour", storage=RedisSyncAdapter(redis.Redis(port=doomed_redis.port, socket_timeout=TIMEOUT))
    )
    def call() -> None:
        return None

    call()
    with frozen(doomed_redis):
        for attempt in range(2):  # on the pooled connection, then (after the backoff) a new one
            started = time.monotonic()
            with pytest.raises(StorageError, match="unreachable"):
                call()
            assert time.monotonic() - started < TIMEOUT + MARGIN, attempt
            time.sleep(1.1)  # past the failure policy's first backoff: the next call probes


def test_a_stopped_server_costs_an_async_caller_one_timeout(doomed_redis: RedisServer) -> None:
    """The asyncio twin, on a redis.asyncio client with redis-py 8's default retries."""

    async def main() -> None:
        client = redis.asyncio.Redis(port=doomed_redis.port, socket_timeout=TIMEOUT)

        @rate_limit("100/hour", storage=RedisAsyncAdapter(client))
        async def call() -> None:
            return None

        await call()
        try:
            with frozen(doomed_redis):
                for attempt in range(2):
                    started = time.monotonic()
                    with pytest.raises(StorageError, match="unreachable"):
                        await call()
                    assert time.monotonic() - started < TIMEOUT + MARGIN, attempt
                    await asyncio.sleep(1.1)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_the_clients_other_commands_keep_their_retries(doomed_redis: RedisServer, proxy: LossyProxy) -> None:
    """Limify's scripts are sent once, but the user's own commands on the same client still retry."""
    client = SYNC_CLIENTS["redis-py with retries"](proxy.port)

    @rate_limit("5/hour", algorithm="fixed_window", storage=RedisSyncAdapter(client), name="shared")
    def call() -> None:
        return None

    call()
    proxy.lose_next_reply(b"INCR")
    assert client.incr("mine") == 2  # the lost INCR was retried, by the client's own policy
    assert proxy.lost == 1
    call()


@pytest.fixture
def cluster_proxies(cluster_url: str) -> Iterator[dict[int, LossyProxy]]:
    """A lossy proxy in front of each node of the session's cluster, by node port."""
    ports = [int(node.rsplit(":", 1)[1]) for node in cluster_url.split("://")[1].split(",")]
    proxies = {port: LossyProxy(port) for port in ports}
    try:
        yield proxies
    finally:
        for own in proxies.values():
            own.close()


def test_a_cluster_client_sends_a_script_once(
    cluster_url: str, cluster_proxies: dict[int, LossyProxy]
) -> None:
    """A user-built RedisCluster (retrying by default) behind the proxies: a lost reply counts once."""
    remap = {port: own.port for port, own in cluster_proxies.items()}
    client = redis.cluster.RedisCluster(
        host="127.0.0.1",
        port=next(iter(cluster_proxies.values())).port,
        socket_timeout=TIMEOUT,
        address_remap=lambda address: (address[0], remap.get(address[1], address[1])),
    )
    direct = redis.cluster.RedisCluster.from_url(
        cluster_url.replace("redis+cluster", "redis", 1).split(",")[0]
    )
    try:
        direct.delete("limify:cluster-once:default")

        @rate_limit("5/hour", algorithm="fixed_window", storage=RedisSyncAdapter(client), name="cluster-once")
        def call() -> None:
            return None

        call()
        for own in cluster_proxies.values():
            own.lose_next_reply()
        started = time.monotonic()
        with pytest.raises(StorageError):
            call()
        assert time.monotonic() - started < TIMEOUT + MARGIN
        assert sum(own.lost for own in cluster_proxies.values()) == 1
        raw = direct.get("limify:cluster-once:default")
        assert raw is not None and int(raw.split(b":")[1]) == 2
    finally:
        client.close()
        direct.close()


def test_an_async_cluster_client_sends_a_script_once(
    cluster_url: str, cluster_proxies: dict[int, LossyProxy]
) -> None:
    """The same with redis.asyncio.RedisCluster."""
    remap = {port: own.port for port, own in cluster_proxies.items()}
    direct = redis.cluster.RedisCluster.from_url(
        cluster_url.replace("redis+cluster", "redis", 1).split(",")[0]
    )
    direct.delete("limify:acluster-once:default")

    async def main() -> None:
        client = redis.asyncio.cluster.RedisCluster(
            host="127.0.0.1",
            port=next(iter(cluster_proxies.values())).port,
            socket_timeout=TIMEOUT,
            reinitialize_steps=0,
            address_remap=lambda address: (address[0], remap.get(address[1], address[1])),
        )

        @rate_limit(
            "5/hour", algorithm="fixed_window", storage=RedisAsyncAdapter(client), name="acluster-once"
        )
        async def call() -> None:
            return None

        try:
            await call()
            for own in cluster_proxies.values():
                own.lose_next_reply()
            started = time.monotonic()
            with pytest.raises(StorageError):
                await call()
            assert time.monotonic() - started < TIMEOUT + MARGIN
        finally:
            await client.aclose()

    try:
        asyncio.run(main())
        assert sum(own.lost for own in cluster_proxies.values()) == 1
        raw = direct.get("limify:acluster-once:default")
        assert raw is not None and int(raw.split(b":")[1]) == 2
    finally:
        direct.close()
