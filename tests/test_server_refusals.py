"""A server that answers but cannot take calls (OOM, READONLY, BUSY...) and one that may evict keys.

Such answers are storage failures: StorageError, so the limit's failure policy decides
and web adapters answer 503 or let the request through, never 500. Genuine errors in
the call (a key holding another type) still reach the caller as the client raised them.
A server whose ``maxmemory-policy`` can evict limiter keys is reported, once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from limify import Limify, LimifyConfig, RateLimitExceeded, Rule, StorageError, rate_limit
from limify.adapters.fastapi.middleware import LimifyMiddleware
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.servers import RedisServer, free_port


def fill(server: RedisServer) -> None:
    """Write until a noeviction server with a small maxmemory answers OOM."""
    client = redis.Redis(port=server.port)
    try:
        for number in range(100_000):
            try:
                client.set(f"filler:{number}", "x" * 10_000)
            except redis.OutOfMemoryError:
                return
        raise AssertionError("the server never ran out of memory")
    finally:
        client.close()


def full_server() -> tuple[list[RedisServer], str]:
    server = RedisServer(None, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction").start()
    fill(server)
    return [server], "OutOfMemoryError"


def replica() -> tuple[list[RedisServer], str]:
    primary = RedisServer().start()
    return [
        RedisServer(None, "--replicaof", "127.0.0.1", str(primary.port)).start(),
        primary,
    ], "ReadOnlyError"


def cut_off_replica() -> tuple[list[RedisServer], str]:
    """A replica whose primary is gone, told not to serve stale data: it answers MASTERDOWN."""
    server = RedisServer(None, "--replica-serve-stale-data", "no").start()
    client = redis.Redis(port=server.port)
    client.replicaof("127.0.0.1", free_port())  # after start: the start-up PING would get MASTERDOWN too
    client.close()
    return [server], "MasterDownError|MASTERDOWN"  # redis-py < 5.1 has no class for it


REFUSING: dict[str, Callable[[], tuple[list[RedisServer], str]]] = {
    "oom": full_server,
    "readonly": replica,
    "masterdown": cut_off_replica,
}


@pytest.fixture(scope="module", params=list(REFUSING))
def refusing(request: pytest.FixtureRequest) -> Iterator[tuple[RedisServer, str]]:
    """A server that refuses every write, and the class of error its answer is."""
    servers, error = REFUSING[request.param]()
    try:
        yield servers[0], error
    finally:
        for server in servers:
            server.stop()


POLICIES = ["fail_open", "fail_closed", "local"]


def outcomes(call: Callable[[], object], times: int = 4) -> list[str]:
    found = []
    for _ in range(times):
        try:
            call()
            found.append("ok")
        except RateLimitExceeded:
            found.append("refused")
        except StorageError:
            found.append("storage_error")
    return found


EXPECTED = {
    "fail_open": ["ok"] * 4,
    "fail_closed": ["storage_error"] * 4,
    "local": ["ok", "ok", "ok", "refused"],  # 3/hour, counted in process
}


@pytest.mark.parametrize("client", ["url", "user-built"])
@pytest.mark.parametrize("policy", POLICIES)
def test_refusals_follow_the_failure_policy(
    refusing: tuple[RedisServer, str], policy: str, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    """OOM, READONLY and MASTERDOWN answers are StorageError: each policy gives its own answer."""
    server, error = refusing
    storage = server.url if client == "url" else RedisSyncAdapter(redis.Redis(port=server.port))

    @rate_limit("3/hour", storage=storage, on_storage_error=policy, name=f"refused-{policy}-{client}")
    def call() -> None:
        return None

    assert outcomes(call) == EXPECTED[policy]
    assert any(re.search(error, record.getMessage()) for record in caplog.records)  # the policy's warning


@pytest.mark.parametrize("policy", POLICIES)
def test_async_refusals_follow_the_failure_policy(refusing: tuple[RedisServer, str], policy: str) -> None:
    """The asyncio twin."""
    server, error = refusing

    @rate_limit("3/hour", storage=server.url, on_storage_error=policy, name=f"arefused-{policy}")
    async def call() -> None:
        return None

    async def main() -> list[str]:
        found = []
        for _ in range(4):
            try:
                await call()
                found.append("ok")
            except RateLimitExceeded:
                found.append("refused")
            except StorageError as exc:
                assert found or re.search(error, str(exc))
                found.append("storage_error")
        return found

    assert asyncio.run(main()) == EXPECTED[policy]


def test_the_adapter_raises_storage_error_naming_the_refusal(refusing: tuple[RedisServer, str]) -> None:
    """Below the failure policies: the adapter itself raises StorageError, from the client's error."""
    server, error = refusing
    from limify.core.algorithms.fixed_window import FixedWindowAlgorithm
    from limify.core.plans import Plan

    algorithm = FixedWindowAlgorithm(RedisSyncAdapter.from_url(server.url))
    with pytest.raises(StorageError, match="cannot serve the call|unreachable") as raised:
        algorithm.check("limify:direct", Plan("p", 3, 3600))
    assert re.search(error, f"{type(raised.value.__cause__).__name__}: {raised.value.__cause__}")


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@pytest.mark.parametrize(("policy", "status"), [("fail_closed", 503), ("fail_open", 200), ("local", 200)])
def test_asgi_middleware_answers_503_or_lets_through_never_500(
    refusing: tuple[RedisServer, str], policy: str, status: int
) -> None:
    """LimifyMiddleware on a refusing server: 503 under fail_closed, the endpoint otherwise."""
    server, _ = refusing
    config = LimifyConfig([Rule(f"asgi-{policy}", path="/items", rate="3/minute", on_storage_error=policy)])
    app = Starlette(
        routes=[Route("/items", ok)],
        middleware=[Middleware(LimifyMiddleware, limiter=Limify(config=config, storage=server.url))],
    )
    with TestClient(app) as client:
        response = client.get("/items")
    assert response.status_code == status, response.text


def test_a_busy_server_is_a_storage_failure() -> None:
    """BUSY (another script running past busy-reply-threshold): StorageError, then calls resume."""
    server = RedisServer(None, "--busy-reply-threshold", "100").start()
    blocker = redis.Redis(port=server.port)
    killer = redis.Redis(port=server.port)
    looping = threading.Thread(
        target=lambda: pytest.raises(redis.ResponseError, blocker.eval, "while true do end", 0), daemon=True
    )
    try:

        @rate_limit("3/hour", storage=RedisSyncAdapter.from_url(server.url), name="busy")
        def call() -> None:
            return None

        looping.start()
        time.sleep(0.3)  # past the threshold: the server now answers BUSY
        with pytest.raises(StorageError, match="BUSY"):
            call()
    finally:
        for _ in range(50):
            try:
                killer.script_kill()
                break
            except redis.ResponseError:  # NOTBUSY: the loop has not started yet
                time.sleep(0.05)
        looping.join(5)
        blocker.close()
        killer.close()
        server.stop()


def test_no_permission_is_a_storage_failure(doomed_redis: RedisServer) -> None:
    """NOPERM (an ACL user that may not run scripts): StorageError for the failure policy."""
    server = doomed_redis
    admin = redis.Redis(port=server.port)
    try:
        admin.acl_setuser(
            "noscripts",
            enabled=True,
            passwords=["+secret"],
            keys=["*"],
            commands=["+@all", "-evalsha", "-eval"],
        )
        url = f"redis://noscripts:secret@127.0.0.1:{server.port}/0"

        @rate_limit("3/hour", storage=url, on_storage_error="fail_open", name="noperm-open")
        def opened() -> None:
            return None

        @rate_limit("3/hour", storage=url, name="noperm-closed")
        def closed() -> None:
            return None

        assert outcomes(opened) == ["ok"] * 4
        with pytest.raises(StorageError, match="NoPermissionError"):
            closed()
    finally:
        admin.close()


def test_errors_of_the_call_itself_stay_raw(redis_url: str) -> None:
    """A limiter key holding another type (WRONGTYPE) is not a storage failure: raised as is."""
    client = redis.Redis.from_url(redis_url)
    client.rpush("limify:wrongtype:default", "not a limiter")

    @rate_limit(
        "3/hour", storage=redis_url, on_storage_error="fail_open", name="wrongtype", algorithm="fixed_window"
    )
    def call() -> None:
        return None

    with pytest.raises(redis.ResponseError, match="WRONGTYPE") as raised:
        call()
    assert not isinstance(raised.value, StorageError)
    client.close()


# Eviction policies (item 5 of issue 10).


def warnings_about_eviction(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "limify"
        and record.levelno == logging.WARNING
        and "maxmemory-policy" in record.getMessage()
    ]


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-random", "volatile-lru", "volatile-ttl"])
def test_an_evicting_policy_is_reported_once(policy: str, caplog: pytest.LogCaptureFixture) -> None:
    """Many calls, sync and from several threads at once: one warning, naming the policy."""
    server = RedisServer(None, "--maxmemory-policy", policy).start()
    try:

        @rate_limit("1000/hour", storage=RedisSyncAdapter.from_url(server.url), name="evicting")
        def call() -> None:
            return None

        threads = [threading.Thread(target=lambda: [call() for _ in range(20)]) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        found = warnings_about_eviction(caplog)
        assert len(found) == 1, [record.getMessage() for record in found]
        assert policy in found[0].getMessage() and f"127.0.0.1:{server.port}" in found[0].getMessage()
        assert "noeviction" in found[0].getMessage()  # what to do instead
    finally:
        server.stop()


def test_an_async_adapter_reports_an_evicting_policy_once(caplog: pytest.LogCaptureFixture) -> None:
    """50 concurrent tasks, then more: one warning."""
    server = RedisServer(None, "--maxmemory-policy", "allkeys-lfu").start()
    try:

        @rate_limit("1000/hour", storage=RedisAsyncAdapter.from_url(server.url), name="aevicting")
        async def call() -> None:
            return None

        async def main() -> None:
            await asyncio.gather(*(call() for _ in range(50)))
            for _ in range(10):
                await call()

        asyncio.run(main())
        found = warnings_about_eviction(caplog)
        assert len(found) == 1 and "allkeys-lfu" in found[0].getMessage()
    finally:
        server.stop()


def test_noeviction_is_not_reported(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The default policy, noeviction, keeps every key: nothing to say."""

    @rate_limit("1000/hour", storage=RedisSyncAdapter.from_url(redis_url), name="noeviction")
    def call() -> None:
        return None

    for _ in range(5):
        call()
    assert warnings_about_eviction(caplog) == []


def test_a_server_refusing_config_get_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    """CONFIG renamed away (as managed services do): no warning, a debug note, calls unaffected."""
    caplog.set_level(logging.DEBUG, logger="limify")
    server = RedisServer(None, "--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", "").start()
    try:

        @rate_limit("3/hour", storage=RedisSyncAdapter.from_url(server.url), name="noconfig")
        def call() -> None:
            return None

        assert outcomes(call) == ["ok", "ok", "ok", "refused"]
        assert warnings_about_eviction(caplog) == []
        assert [r for r in caplog.records if "could not read the maxmemory-policy" in r.getMessage()]
    finally:
        server.stop()


def test_each_cluster_node_is_checked(cluster_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """On a cluster, the policy is read on each master the limits reach: only the evicting one warns."""
    port = int(cluster_url.split("://")[1].split(",")[0].rsplit(":", 1)[1])
    node = redis.Redis(port=port)
    node.config_set("maxmemory-policy", "volatile-lfu")
    try:

        @rate_limit(
            "1000/hour", storage=RedisSyncAdapter.from_url(cluster_url), key="user", name="cluster-evict"
        )
        def call(user: int) -> None:
            return None

        for user in range(50):  # keys on every master
            call(user)
        found = warnings_about_eviction(caplog)
        assert len(found) == 1 and f"127.0.0.1:{port}" in found[0].getMessage(), found
    finally:
        node.config_set("maxmemory-policy", "noeviction")
        node.close()
