"""limify.contrib.requests against a real loopback HTTP server: rate, Retry-After pauses, sharing."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from limify import InMemoryAdapter, Plan, RateLimitExceeded
from limify.contrib.requests import RateLimitAdapter, host_key
from limify.core.redis_adapter import RedisSyncAdapter
from tests.upstream import Upstream, open_upstream, rate_violations, strict_upstream

__all__ = ["open_upstream", "strict_upstream"]  # fixtures, imported for pytest

BURSTY = Plan("default", 2, 0.1)  # bursts of 2, 20 per second


class _NotingHTTPAdapter(HTTPAdapter):
    """Notes when each request is handed to the network (after RateLimitAdapter admitted it)."""

    sent: list[float]

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(time.time())
        return super().send(request, *args, **kwargs)


class RecordingAdapter(RateLimitAdapter, _NotingHTTPAdapter):
    """RateLimitAdapter whose sends are noted once admitted (its super().send is the noting one)."""


def session_with(adapter: HTTPAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    return session


def test_sessions_in_threads_never_exceed_the_shared_rate(open_upstream: Upstream, live_storage: Any) -> None:
    """4 threads, each with its own session and adapter on one storage: one shared rate."""
    sent: list[float] = []

    def worker() -> None:
        adapter = RecordingAdapter(BURSTY, storage=live_storage)
        adapter.sent = sent
        with session_with(adapter) as session:
            for _ in range(6):
                assert session.get(open_upstream.url).status_code == 200

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(open_upstream.arrivals) == len(sent) == 24
    assert rate_violations(sent, BURSTY) == []


def test_after_a_429_nothing_reaches_the_upstream_before_retry_after(
    strict_upstream: Upstream, live_storage: Any
) -> None:
    """A 429 with Retry-After (seconds or HTTP date) pauses the host: later requests wait it out."""
    with session_with(RateLimitAdapter("100/second", storage=live_storage)) as session:
        statuses = [session.get(strict_upstream.url).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 200]
    assert strict_upstream.early_arrivals() == []


def test_fail_fast_raises_during_a_pause_without_sending(
    strict_upstream: Upstream, live_storage: Any
) -> None:
    """With on_exceeded='raise', a paused host refuses at once and the upstream sees nothing."""
    adapter = RateLimitAdapter("100/second", storage=live_storage, on_exceeded="raise")
    with session_with(adapter) as session:
        assert [session.get(strict_upstream.url).status_code for _ in range(4)] == [200, 200, 200, 429]
        with pytest.raises(RateLimitExceeded) as refused:
            session.get(strict_upstream.url)
    assert 0 < refused.value.retry_after <= 2.001
    assert len(strict_upstream.arrivals) == 4


def test_requests_and_httpx_clients_share_one_pause(strict_upstream: Upstream, redis_url: str) -> None:
    """Under the default name, a 429 seen by requests holds back an httpx client on the same Redis."""
    import httpx

    from limify.contrib.httpx import RateLimitTransport

    adapter = RateLimitAdapter("100/second", storage=RedisSyncAdapter.from_url(redis_url))
    transport = RateLimitTransport("100/second", storage=RedisSyncAdapter.from_url(redis_url))
    with session_with(adapter) as session, httpx.Client(transport=transport) as client:
        assert [session.get(strict_upstream.url).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert client.get(strict_upstream.url).status_code == 200
    assert strict_upstream.early_arrivals() == []


def test_adapter_options_reach_http_adapter() -> None:
    """Keyword arguments Limify does not know go to HTTPAdapter."""
    adapter = RateLimitAdapter("10/second", storage=InMemoryAdapter(), max_retries=3, pool_maxsize=4)
    assert adapter.max_retries.total == 3 and adapter._pool_maxsize == 4


def test_default_key_is_the_host_with_an_explicit_port() -> None:
    """Requests to one host share a bucket; an explicit port makes its own."""
    prepared = requests.Request("GET", "https://api.example.com/x").prepare()
    assert host_key(prepared) == "api.example.com"
    assert host_key(requests.Request("GET", "http://127.0.0.1:8080/").prepare()) == "127.0.0.1:8080"


def test_bad_options_fail_when_building_the_adapter() -> None:
    """A bad option raises at construction, naming it."""
    with pytest.raises(ValueError, match="on_exceeded"):
        RateLimitAdapter("10/second", on_exceeded="queue")
    with pytest.raises(ValueError, match="invalid rate"):
        RateLimitAdapter("10 per fortnight")
