"""Decision events, on_breach hooks and shadow mode, through every entry point.

Each decision reaches the subscribers as one immutable limify.events.Decision;
a refused call reaches its limit's on_breach once; shadow mode decides exactly
as enforcement would (admitted calls consume, refusals consume nothing) but
lets every call through and says so in its events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, RateLimitExceeded, Rule, StorageError
from limify import configure, events, rate_limit
from limify.adapters.fastapi.middleware import LimifyMiddleware
from limify.contrib.httpx import RateLimitTransport
from limify.core.algorithms.token_bucket import TokenBucketAlgorithm
from limify.core.storage import DEFAULTS
from tests.servers import RedisServer
from tests.upstream import Upstream, open_upstream

__all__ = ["open_upstream"]  # a fixture, imported for pytest


@pytest.fixture
def seen() -> Iterator[list[events.Decision]]:
    """The events delivered while the test runs."""
    received: list[events.Decision] = []
    with events.subscribed(received.append):
        yield received


@pytest.fixture
def defaults() -> Iterator[None]:
    """Restore the process defaults a test changes with configure()."""
    storage, policy, shadow = DEFAULTS.storage, DEFAULTS.on_storage_error, DEFAULTS.shadow
    yield
    configure(storage=storage, on_storage_error=policy, shadow=shadow)


def test_each_decorated_decision_is_one_event(seen: list[events.Decision], clock: ManualClock) -> None:
    """An admitted and a refused call: two events naming the limit, key, plan, outcome and source."""

    @rate_limit("1/minute", key="user", storage=InMemoryAdapter(clock=clock), name="events.fetch")
    def fetch(user: str) -> str:
        return user

    fetch("ann")
    with pytest.raises(RateLimitExceeded):
        fetch("ann")
    admitted, refused = seen
    assert (admitted.name, admitted.plan, admitted.algorithm, admitted.source) == (
        "events.fetch", "default", "token_bucket", "decorator",
    )  # fmt: skip
    assert admitted.key == refused.key == "limify:events.fetch:default:ann"
    assert admitted.allowed and admitted.remaining == 0 and admitted.retry_after == 0.0
    assert not refused.allowed and refused.retry_after == 60.0 and refused.enforced and refused.storage_ok
    assert admitted.duration > 0 and refused.outcome == "refused" and admitted.outcome == "allowed"


@pytest.mark.anyio
async def test_async_calls_report_too(seen: list[events.Decision], clock: ManualClock) -> None:
    """Async decorated calls send the same events."""

    @rate_limit("1/minute", storage=InMemoryAdapter(clock=clock), name="events.async")
    async def ping() -> None:
        return None

    await ping()
    with pytest.raises(RateLimitExceeded):
        await ping()
    assert [event.allowed for event in seen] == [True, False]


def test_web_outbound_and_shell_decisions_name_their_source(
    seen: list[events.Decision], clock: ManualClock, open_upstream: Upstream
) -> None:
    """Web rules, outbound transports and bare shells report 'web', 'outbound' and 'shell'."""
    store = InMemoryAdapter(clock=clock)
    limify = Limify(config=LimifyConfig([Rule("items", path="/items", rate="5/minute")]), storage=store)

    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/items", items)], middleware=[Middleware(LimifyMiddleware, limiter=limify)]
    )
    TestClient(app).get("/items")
    with httpx.Client(transport=RateLimitTransport("5/minute", storage=store, name="api")) as client:
        client.get(open_upstream.url)
    TokenBucketAlgorithm(store).check("k", Rule("x", rate="1/s").plans[0])
    assert [(event.source, event.name) for event in seen] == [
        ("web", "items"),
        ("outbound", "api"),
        ("shell", ""),
    ]


def test_a_raising_subscriber_is_logged_once_and_breaks_nothing(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscriber that raises never breaks the call; it is logged once; others still get events."""
    received: list[events.Decision] = []

    def broken(event: events.Decision) -> None:
        raise RuntimeError("metrics backend down")

    @rate_limit("5/minute", storage=InMemoryAdapter(clock=clock), name="events.broken")
    def call() -> str:
        return "ran"

    with events.subscribed(broken), events.subscribed(received.append), caplog.at_level(logging.ERROR):
        assert [call() for _ in range(3)] == ["ran"] * 3
    assert len(received) == 3
    assert len([r for r in caplog.records if "subscriber" in r.getMessage()]) == 1
    events.unsubscribe(broken)  # unsubscribing twice is harmless


def test_on_breach_is_called_once_per_refused_call(clock: ManualClock) -> None:
    """Two refused calls, two breaches; an admitted call or a wait that ends admitted, none."""
    breaches: list[events.Decision] = []

    @rate_limit(
        "1/minute", storage=InMemoryAdapter(clock=clock), name="events.breach", on_breach=breaches.append
    )
    def call() -> None:
        return None

    call()
    for _ in range(2):
        with pytest.raises(RateLimitExceeded):
            call()
    assert len(breaches) == 2 and all(not event.allowed and event.enforced for event in breaches)


def test_on_breach_of_a_waiting_call_fires_when_it_gives_up(clock: ManualClock) -> None:
    """A call that waits and then raises at max_wait breaches once, not once per attempt."""
    breaches: list[events.Decision] = []

    @rate_limit("1/hour", storage=InMemoryAdapter(clock=clock), name="events.wait", on_exceeded="wait",
                max_wait=0.01, on_breach=breaches.append)  # fmt: skip
    def call() -> None:
        return None

    call()
    with pytest.raises(RateLimitExceeded):
        call()
    assert len(breaches) == 1


def test_shadow_mode_decides_as_enforced_but_lets_calls_through(
    seen: list[events.Decision], clock: ManualClock
) -> None:
    """1/minute in shadow: both calls run, the second is reported refused and not enforced, then it counts."""
    store = InMemoryAdapter(clock=clock)
    breaches: list[events.Decision] = []

    @rate_limit("1/minute", storage=store, name="events.shadow", shadow=True, on_breach=breaches.append)
    def shadowed() -> str:
        return "ran"

    @rate_limit("1/minute", storage=store, name="events.shadow")
    def enforced() -> str:
        return "ran"

    assert shadowed() == shadowed() == "ran"
    assert [(event.allowed, event.enforced) for event in seen] == [(True, False), (False, False)]
    assert seen[1].outcome == "shadow-refused" and len(breaches) == 1
    with pytest.raises(RateLimitExceeded):
        enforced()  # the shadow calls consumed exactly what enforcement would have


@pytest.mark.usefixtures("defaults")
def test_configure_shadow_is_the_default_for_limits_that_say_nothing(clock: ManualClock) -> None:
    """configure(shadow=True) puts limits without shadow= in shadow mode; shadow=False opts out."""

    @rate_limit("1/minute", storage=InMemoryAdapter(clock=clock), name="events.default-shadow")
    def open_call() -> None:
        return None

    @rate_limit("1/minute", storage=InMemoryAdapter(clock=clock), name="events.strict", shadow=False)
    def strict_call() -> None:
        return None

    configure(shadow=True)
    open_call()
    open_call()
    strict_call()
    with pytest.raises(RateLimitExceeded):
        strict_call()


def test_a_shadow_rule_sends_no_429_and_no_headers(seen: list[events.Decision], clock: ManualClock) -> None:
    """Rule(shadow=True): over the limit the request still runs, with no rate-limit headers."""
    rule = Rule("items", path="/items", rate="1/minute", shadow=True)
    limify = Limify(config=LimifyConfig([rule]), storage=InMemoryAdapter(clock=clock))

    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    client = TestClient(
        Starlette(routes=[Route("/items", items)], middleware=[Middleware(LimifyMiddleware, limiter=limify)])
    )
    responses = [client.get("/items") for _ in range(3)]
    assert [response.status_code for response in responses] == [200] * 3
    assert all("X-RateLimit-Limit" not in response.headers for response in responses)
    assert [event.outcome for event in seen] == ["allowed", "shadow-refused", "shadow-refused"]


def test_storage_failures_are_reported_as_such(
    seen: list[events.Decision], doomed_redis: RedisServer
) -> None:
    """With Redis stopped: fail_open's answer and fail_closed's refusal both say storage_ok=False."""
    url = doomed_redis.url + "?socket_timeout=0.5&socket_connect_timeout=0.5"
    doomed_redis.stop()

    @rate_limit("5/minute", storage=url, on_storage_error="fail_open", name="events.open")
    def opened() -> None:
        return None

    @rate_limit("5/minute", storage=url, on_storage_error="fail_closed", name="events.closed")
    def closed() -> None:
        return None

    opened()
    with pytest.raises(StorageError):
        closed()
    assert [(event.name, event.allowed, event.storage_ok, event.outcome) for event in seen] == [
        ("events.open", True, False, "storage-error"),
        ("events.closed", False, False, "storage-error"),
    ]


def test_decisions_inside_celery_task_bodies_report_celery(
    seen: list[events.Decision], clock: ManualClock
) -> None:
    """A decorated task body run by Celery (LimifyTask) reports source 'celery'; called directly, 'decorator'."""
    from celery import Celery

    from limify.contrib.celery import LimifyTask

    app = Celery("events", broker="memory://", backend="cache+memory://")

    @app.task(base=LimifyTask)
    @rate_limit("5/minute", storage=InMemoryAdapter(clock=clock), name="events.task")
    def task() -> str:
        return "done"

    assert task.apply().get() == "done"
    task.run()
    assert [event.source for event in seen] == ["celery", "decorator"]
