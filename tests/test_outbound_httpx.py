"""limify.contrib.httpx against a real loopback HTTP server: rate, Retry-After pauses, sharing."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import httpx
import pytest

from limify import InMemoryAdapter, Plan, RateLimitExceeded
from limify.contrib.httpx import AsyncRateLimitTransport, RateLimitTransport, host_key
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.upstream import Upstream, open_upstream, rate_violations, strict_upstream

__all__ = ["open_upstream", "strict_upstream"]  # fixtures, imported for pytest

BURSTY = Plan("default", 2, 0.1)  # bursts of 2, 20 per second


class Recording(httpx.BaseTransport):
    """An inner transport noting when each admitted request is handed to the network."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(time.time())
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncRecording(httpx.AsyncBaseTransport):
    """The async twin of :class:`Recording`."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(time.time())
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_threads_sharing_a_client_never_exceed_its_rate(open_upstream: Upstream, live_storage: Any) -> None:
    """4 threads x 6 requests through one client: no more are sent than the bucket admits."""
    sent = Recording()
    transport = RateLimitTransport(BURSTY, storage=live_storage, transport=sent)
    with httpx.Client(transport=transport, base_url=open_upstream.url) as client:

        def worker() -> None:
            for _ in range(6):
                assert client.get("/").status_code == 200

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(open_upstream.arrivals) == len(sent.sent) == 24
    assert rate_violations(sent.sent, BURSTY) == []
    # 24 requests at 20/s after a burst of 2 cannot be admitted in less than 1.1 s; the
    # records trail admissions by up to a thread switch (rate_violations' 0.05 s slack).
    assert max(sent.sent) - min(sent.sent) >= 1.1 - 0.05


def test_after_a_429_nothing_reaches_the_upstream_before_retry_after(
    strict_upstream: Upstream, live_storage: Any
) -> None:
    """A 429 with Retry-After (seconds or HTTP date) pauses the host: later requests wait it out."""
    transport = RateLimitTransport("100/second", storage=live_storage)
    with httpx.Client(transport=transport, base_url=strict_upstream.url) as client:
        statuses = [client.get("/").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 200]
    assert strict_upstream.early_arrivals() == []
    ((_, until),) = strict_upstream.refusals
    assert strict_upstream.arrivals[-1] >= until


def test_fail_fast_raises_during_a_pause_without_sending(
    strict_upstream: Upstream, live_storage: Any
) -> None:
    """With on_exceeded='raise', a paused host refuses at once and the upstream sees nothing."""
    transport = RateLimitTransport("100/second", storage=live_storage, on_exceeded="raise")
    with httpx.Client(transport=transport, base_url=strict_upstream.url) as client:
        assert [client.get("/").status_code for _ in range(4)] == [200, 200, 200, 429]
        with pytest.raises(RateLimitExceeded) as refused:
            client.get("/")
    assert 0 < refused.value.retry_after <= 2.001
    assert refused.value.key.endswith(":" + "127.0.0.1%3A" + strict_upstream.url.rsplit(":", 1)[1])
    assert len(strict_upstream.arrivals) == 4


def test_max_wait_shorter_than_the_pause_raises_at_once(strict_upstream: Upstream) -> None:
    """A pause longer than max_wait raises without sleeping."""
    transport = RateLimitTransport("100/second", storage=InMemoryAdapter(), max_wait=0.2)
    with httpx.Client(transport=transport, base_url=strict_upstream.url) as client:
        for _ in range(4):
            client.get("/")
        started = time.monotonic()
        with pytest.raises(RateLimitExceeded):
            client.get("/")
    assert time.monotonic() - started < 0.15


def test_a_pause_is_shared_by_every_client_of_the_storage(
    strict_upstream: Upstream, request: pytest.FixtureRequest
) -> None:
    """Two transports on one Redis but separate connection pools (as two processes): one 429 holds both."""
    url = request.getfixturevalue("redis_url")
    first = RateLimitTransport("100/second", storage=RedisSyncAdapter.from_url(url))
    second = RateLimitTransport("100/second", storage=RedisSyncAdapter.from_url(url))
    with httpx.Client(transport=first) as one, httpx.Client(transport=second) as other:
        assert [one.get(strict_upstream.url).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert other.get(strict_upstream.url).status_code == 200
    assert strict_upstream.early_arrivals() == []


def test_memory_pauses_are_shared_by_transports_on_one_adapter(strict_upstream: Upstream) -> None:
    """Two transports on one InMemoryAdapter share the pause, as they share the buckets."""
    memory = InMemoryAdapter()
    first = RateLimitTransport("100/second", storage=memory, on_exceeded="raise")
    second = RateLimitTransport("100/second", storage=memory, on_exceeded="raise")
    with httpx.Client(transport=first) as one, httpx.Client(transport=second) as other:
        for _ in range(4):
            one.get(strict_upstream.url)
        with pytest.raises(RateLimitExceeded):
            other.get(strict_upstream.url)


def test_key_function_picks_the_bucket_and_none_exempts(open_upstream: Upstream) -> None:
    """key= over the request: one bucket per path here; returning None skips the limit."""

    def by_path(request: httpx.Request) -> str | None:
        return None if request.url.path == "/health" else request.url.path

    transport = RateLimitTransport("1/minute", storage=InMemoryAdapter(), key=by_path, on_exceeded="raise")
    with httpx.Client(transport=transport, base_url=open_upstream.url) as client:
        assert client.get("/a").status_code == 200 and client.get("/b").status_code == 200
        assert all(client.get("/health").status_code == 200 for _ in range(3))
        with pytest.raises(RateLimitExceeded):
            client.get("/a")


def test_default_key_is_the_host_with_an_explicit_port() -> None:
    """Requests to one host share a bucket; an explicit port makes its own."""
    assert host_key(httpx.Request("GET", "https://api.example.com/x")) == "api.example.com"
    assert host_key(httpx.Request("GET", "http://127.0.0.1:8080/x")) == "127.0.0.1:8080"


def test_statuses_outside_pause_on_do_not_pause(strict_upstream: Upstream) -> None:
    """With pause_on=() a 429 is returned but pauses nothing; the next request goes out at once."""
    transport = RateLimitTransport("100/second", storage=InMemoryAdapter(), pause_on=())
    with httpx.Client(transport=transport, base_url=strict_upstream.url) as client:
        assert [client.get("/").status_code for _ in range(5)] == [200, 200, 200, 429, 429]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"on_exceeded": "block"}, ValueError),
        ({"on_exceeded": "raise", "max_wait": 1}, ValueError),
        ({"max_wait": -1}, ValueError),
        ({"pause_on": 429}, TypeError),
        ({"pause_on": (429, 700)}, ValueError),
        ({"max_pause": 0}, ValueError),
        ({"max_pause": "1"}, TypeError),
        ({"name": ""}, TypeError),
        ({"key": "host"}, TypeError),
        ({"algorithm": "nope"}, ValueError),
        ({"algorithm": "concurrency"}, ValueError),  # a lease the transport could never release
        ({"storage": "ftp://x"}, ValueError),
        ({"transport": object()}, TypeError),
    ],
)
def test_bad_options_fail_when_building_the_transport(options: dict[str, Any], error: type) -> None:
    """Every bad option raises ValueError/TypeError at construction."""
    with pytest.raises(error):
        RateLimitTransport("10/second", **options)


def test_a_sync_only_adapter_is_refused_for_the_async_transport(redis_client: Any) -> None:
    """An async transport needs an adapter usable from async code."""
    with pytest.raises(TypeError, match="async"):
        AsyncRateLimitTransport("10/second", storage=RedisSyncAdapter(redis_client))


@pytest.mark.anyio
async def test_async_tasks_sharing_a_client_never_exceed_its_rate(open_upstream: Upstream) -> None:
    """10 concurrent tasks x 2 requests (asyncio and trio): no more are sent than the bucket admits."""
    sent = AsyncRecording()
    transport = AsyncRateLimitTransport(BURSTY, storage=InMemoryAdapter(), transport=sent)
    async with httpx.AsyncClient(transport=transport, base_url=open_upstream.url) as client:

        async def worker() -> None:
            for _ in range(2):
                assert (await client.get("/")).status_code == 200

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(worker)
    assert len(open_upstream.arrivals) == len(sent.sent) == 20
    assert rate_violations(sent.sent, BURSTY, slack=0.002) == []


@pytest.fixture
def async_redis(redis_url: str) -> RedisAsyncAdapter:
    """An async Redis adapter that outlives the test's event loop, so its client closes with the loop."""
    return RedisAsyncAdapter.from_url(redis_url)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_async_pause_on_redis_holds_back_the_next_request(
    strict_upstream: Upstream, async_redis: RedisAsyncAdapter
) -> None:
    """The async transport on Redis: after a 429 the next request waits out Retry-After."""
    transport = AsyncRateLimitTransport("100/second", storage=async_redis)
    async with httpx.AsyncClient(transport=transport, base_url=strict_upstream.url) as client:
        statuses = [(await client.get("/")).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 200]
    assert strict_upstream.early_arrivals() == []


@pytest.mark.anyio
async def test_async_fail_fast_in_memory(strict_upstream: Upstream) -> None:
    """The async transport in memory (asyncio and trio) refuses at once during a pause."""
    transport = AsyncRateLimitTransport("100/second", storage=InMemoryAdapter(), on_exceeded="raise")
    async with httpx.AsyncClient(transport=transport, base_url=strict_upstream.url) as client:
        for _ in range(4):
            await client.get("/")
        with pytest.raises(RateLimitExceeded):
            await client.get("/")
    assert len(strict_upstream.arrivals) == 4
