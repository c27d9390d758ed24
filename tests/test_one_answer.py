"""One outage, one answer: ``@rate_limit``, ``Limify`` and an outbound transport agree.

All three prepare a Check and run it through the one engine, so a stopped Redis
gets the same failure-policy answer from each: under ``fail_open`` a full limit
(admitted, ``remaining`` = limit - cost), under ``fail_closed`` a StorageError
(a 503 for web adapters). Outbound transports follow ``configure()`` like the rest.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from limify import Limify, LimifyConfig, LimitationResult, RequestContext, Rule, StorageError, configure
from limify import rate_limit
from limify.contrib.httpx import RateLimitTransport
from limify.core.storage import DEFAULTS
from tests.servers import RedisServer
from tests.upstream import Upstream, open_upstream

__all__ = ["open_upstream"]  # a fixture, imported for pytest

FULL = LimitationResult(allowed=True, remaining=9, limit=10, reset_after=0.0, retry_after=0.0)


@pytest.fixture
def stopped_redis(doomed_redis: RedisServer) -> str:
    """The URL of a private redis-server that has been stopped (connections are refused)."""
    doomed_redis.stop()
    return doomed_redis.url + "?socket_timeout=0.5&socket_connect_timeout=0.5"


@pytest.fixture
def defaults() -> Iterator[None]:
    """Restore the process defaults a test changes with configure()."""
    storage, policy = DEFAULTS.storage, DEFAULTS.on_storage_error
    yield
    configure(storage=storage, on_storage_error=policy)


def test_fail_open_is_the_same_full_limit_everywhere(stopped_redis: str, open_upstream: Upstream) -> None:
    """Decorator peek, web limiter and outbound request all answer fail_open with a full limit."""

    @rate_limit("10/minute", storage=stopped_redis, on_storage_error="fail_open", name="one-answer")
    def call() -> str:
        return "ran"

    assert call() == "ran"
    assert call.rate_limit.peek() == FULL  # type: ignore[attr-defined]
    rule = Rule("items", path="/items", rate="10/minute", on_storage_error="fail_open")
    limiter = Limify(config=LimifyConfig([rule]), storage=stopped_redis).sync_limiter
    assert limiter.check(RequestContext("GET", "/items", user_id=1)) == FULL
    decision = limiter.decide(RequestContext("GET", "/items", user_id=1))
    assert decision.result == FULL and decision.status == 200 and not decision.limited
    transport = RateLimitTransport("10/minute", storage=stopped_redis, on_storage_error="fail_open")
    with httpx.Client(transport=transport) as client:
        assert client.get(open_upstream.url).status_code == 200


def test_fail_closed_is_a_storage_error_everywhere(stopped_redis: str, open_upstream: Upstream) -> None:
    """Decorator, web limiter (a 503 decision) and outbound request all refuse with StorageError."""

    @rate_limit("10/minute", storage=stopped_redis, on_storage_error="fail_closed", name="one-closed")
    def call() -> str:
        return "ran"

    with pytest.raises(StorageError):
        call()
    rule = Rule("items", path="/items", rate="10/minute", on_storage_error="fail_closed")
    limiter = Limify(config=LimifyConfig([rule]), storage=stopped_redis).sync_limiter
    assert limiter.decide(RequestContext("GET", "/items", user_id=1)).status == 503
    transport = RateLimitTransport("10/minute", storage=stopped_redis, on_storage_error="fail_closed")
    with httpx.Client(transport=transport) as client, pytest.raises(StorageError):
        client.get(open_upstream.url)


@pytest.mark.usefixtures("defaults")
def test_outbound_transports_follow_configure(stopped_redis: str, open_upstream: Upstream) -> None:
    """A transport given no storage and no policy follows configure(), also when it changes later."""
    transport = RateLimitTransport("10/minute")
    configure(storage=stopped_redis, on_storage_error="fail_open")
    with httpx.Client(transport=transport) as client:
        assert client.get(open_upstream.url).status_code == 200
        configure(on_storage_error="fail_closed")
        with pytest.raises(StorageError):
            client.get(open_upstream.url)
