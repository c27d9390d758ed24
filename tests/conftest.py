"""Shared fixtures: a real redis-server, the storage matrix, anyio backends, Hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest
import redis
from hypothesis import HealthCheck, settings

import limify
from limify import InMemoryAdapter, ManualClock
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from limify.core.refusals import forget_all_refusals
from tests.servers import RedisClusterServers, RedisServer, SentinelServers
from tests.store_servers import MemcachedServer, PostgresServer


def pytest_report_header() -> str:
    """Name the limify under test: the installed wheel or the checkout (see tests/__init__.py)."""
    return f"limify {limify.__version__} from {os.path.dirname(limify.__file__)}"


#: What running() starts and stops: a Redis Cluster or a Sentinel set.
ServersT = TypeVar("ServersT", bound=RedisClusterServers | SentinelServers | PostgresServer | MemcachedServer)

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=60,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of a real Redis for this session: our own redis-server, or LIMIFY_TEST_REDIS_URL."""
    configured = os.environ.get("LIMIFY_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    try:
        server = RedisServer().start()  # without the binary: fails with the install advice
    except RuntimeError as exc:
        pytest.fail(f"could not start redis-server: {exc}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a real PostgreSQL for this session: a private server (initdb + postgres), or LIMIFY_TEST_POSTGRES_URL."""
    configured = os.environ.get("LIMIFY_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    with running(lambda: PostgresServer().start(), "PostgreSQL") as server:
        yield server.url


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    """A private memcached process for this session."""
    with running(lambda: MemcachedServer().start(), "memcached") as server:
        yield server


@pytest.fixture
def memcached_url(memcached_server: MemcachedServer) -> str:
    """The session's memcached URL, flushed before the test."""
    memcached_server.flush()
    return memcached_server.url


@contextmanager
def running(start: Callable[[], ServersT], what: str) -> Iterator[ServersT]:
    """Servers started for a session fixture (the session fails, saying why, if they cannot start)."""
    try:
        servers = start()
    except (RuntimeError, OSError) as exc:
        pytest.fail(f"could not start {what}: {exc}", pytrace=False)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A real 3-master Redis Cluster for this session, as a redis+cluster:// URL."""
    with running(lambda: RedisClusterServers().start(), "a Redis Cluster") as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def sentinel_servers() -> Iterator[SentinelServers]:
    """A real master + replica + 3 sentinels for this session."""
    with running(lambda: SentinelServers().start(), "Redis Sentinel") as servers:
        yield servers


@pytest.fixture
def doomed_redis() -> Iterator[RedisServer]:
    """A private redis-server of this test's own, which it may stop, freeze, kill or restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The session's Redis URL, flushed before each test (and the refusals cached for it forgotten)."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    forget_all_refusals()
    yield redis_server_url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client on the flushed test database."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test moves it."""
    return ManualClock()


@pytest.fixture
def memory(clock: ManualClock) -> InMemoryAdapter:
    """A private in-memory adapter on the manual clock."""
    return InMemoryAdapter(clock=clock)


@pytest.fixture(params=["memory", "redis"])
def sync_storage(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[object]:
    """Each sync storage on the same manual clock: in-memory and the real Redis."""
    if request.param == "memory":
        yield InMemoryAdapter(clock=clock)
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    yield RedisSyncAdapter(client, clock=clock)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def live_storage(request: pytest.FixtureRequest) -> object:
    """Each storage on the real clock: a fresh in-memory adapter, or the flushed real Redis by URL."""
    if request.param == "memory":
        return InMemoryAdapter()
    return request.getfixturevalue("redis_url")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Async tests run on asyncio and on trio."""
    return str(request.param)


@pytest.fixture
def redis_async_adapter(redis_url: str, clock: ManualClock) -> RedisAsyncAdapter:
    """An async adapter opening its redis.asyncio clients per event loop."""
    return RedisAsyncAdapter.from_url(redis_url, clock=clock)
