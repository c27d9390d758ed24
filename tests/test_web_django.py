"""Django: LimifyMiddleware and limit_view in sync and async mode, through Django's test clients.

Django is configured here without a project: settings.configure() with this module as
the URLconf.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="limify-tests",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=["tests.test_web_django.FakeAuthMiddleware", "limify.adapters.django.LimifyMiddleware"],
        LIMIFY={},
    )
    django.setup()

from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client, RequestFactory, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.deprecation import MiddlewareMixin  # noqa: E402

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, Plan, rate_limit  # noqa: E402
from limify.adapters.django import limit_view  # noqa: E402
from tests.servers import RedisServer  # noqa: E402


class FakeAuthMiddleware(MiddlewareMixin):
    """Stands in for Django's auth: X-Session names the logged-in user (request.user and request.auser)."""

    def process_request(self, request: HttpRequest) -> None:
        name = request.headers.get("X-Session")
        user = SimpleNamespace(is_authenticated=bool(name), pk=name)

        async def auser() -> Any:
            return user

        request.user = user  # type: ignore[attr-defined]
        request.auser = auser  # type: ignore[attr-defined]


def items(request: HttpRequest) -> JsonResponse:
    """A sync view."""
    return JsonResponse({"ok": True})


async def async_items(request: HttpRequest) -> JsonResponse:
    """An async view."""
    return JsonResponse({"ok": True, "async": True})


@limit_view("report", "1/minute")
def report(request: HttpRequest) -> HttpResponse:
    """A sync view with its own limit."""
    return HttpResponse("report")


@limit_view("async-report", "1/minute")
async def async_report(request: HttpRequest) -> HttpResponse:
    """An async view with its own limit."""
    return HttpResponse("async report")


@rate_limit("1/minute", key="user_id", name="django-user")
def user(request: HttpRequest, user_id: int) -> JsonResponse:
    """A view limited by the generic decorator, keyed by its URL argument."""
    return JsonResponse({"user_id": user_id})


@rate_limit("1/minute", key="user_id", name="django-async-user")
async def async_user(request: HttpRequest, user_id: int) -> JsonResponse:
    """An async view limited by the generic decorator."""
    return JsonResponse({"user_id": user_id})


#: The methods the counted view was called with.
SERVED: list[str] = []


def counted_items(request: HttpRequest) -> HttpResponse:
    """A sync view recording each call (Django calls it for GET and HEAD alike)."""
    SERVED.append(request.method or "")
    return HttpResponse("items")


@rate_limit("1/minute", name="django-open", on_storage_error="fail_open")
def open_view(request: HttpRequest) -> HttpResponse:
    """A view whose @rate_limit admits while its storage is down."""
    SERVED.append("open")
    return HttpResponse("open")


urlpatterns = [
    path("open", open_view),
    path("counted-items", counted_items),
    path("items", items),
    path("async-items", async_items),
    path("report", report),
    path("async-report", async_report),
    path("users/<int:user_id>", user),
    path("async-users/<int:user_id>", async_user),
]

RULES = [
    {"id": "items", "method": "GET", "path": "/items", "rate": "2/minute"},
    {"id": "async-items", "method": "GET", "path": "/async-items", "rate": "2/minute"},
]


@pytest.fixture
def memory(clock: ManualClock) -> Iterator[InMemoryAdapter]:
    """settings.LIMIFY on a fresh in-memory store, also the process default for @rate_limit."""
    from limify import configure, get_default_storage

    store = InMemoryAdapter(clock=clock)
    previous = get_default_storage()
    configure(storage=store)
    with override_settings(LIMIFY={"RULES": RULES, "STORAGE": store}):
        yield store
    configure(storage=previous)


def get_async(url: str, **headers: str) -> Any:
    """One request through Django's ASGI handler (the middleware runs in async mode)."""

    async def go() -> Any:
        return await AsyncClient().get(url, headers=headers)

    return asyncio.run(go())


def test_sync_middleware_limits_with_headers(memory: InMemoryAdapter, clock: ManualClock) -> None:
    """Sync stack: two admitted with headers, then a JSON 429 with Retry-After; time restores it."""
    client = Client()
    first = client.get("/items")
    assert first.status_code == 200 and first["X-RateLimit-Remaining"] == "1"
    assert client.get("/items").status_code == 200
    blocked = client.get("/items")
    assert blocked.status_code == 429 and blocked["Retry-After"] == "30"
    assert blocked.json() == {"detail": "Too Many Requests", "retry_after": 30}
    clock.advance(30)
    assert client.get("/items").status_code == 200


def test_async_middleware_and_async_views(memory: InMemoryAdapter) -> None:
    """Async stack (AsyncClient): the middleware runs in async mode and limits async views."""
    statuses = [get_async("/async-items").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert get_async("/async-items", X_SESSION="alice").status_code == 200  # another identity


def test_identity_from_request_user(memory: InMemoryAdapter) -> None:
    """The authenticated user's pk picks the bucket, in sync and async mode; anonymous falls to the IP."""
    client = Client()
    assert [client.get("/items", headers={"X-Session": "ann"}).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    assert client.get("/items", headers={"X-Session": "bea"}).status_code == 200
    assert [get_async("/async-items", X_SESSION="cid").status_code for _ in range(3)] == [200, 200, 429]


def test_limit_view_sync_and_async(memory: InMemoryAdapter) -> None:
    """limit_view limits sync and async views with their own rule and headers."""
    client = Client()
    assert client.get("/report").content == b"report"
    refused = client.get("/report")
    assert refused.status_code == 429 and refused["X-RateLimit-Limit"] == "1"
    assert get_async("/async-report").content == b"async report"
    assert get_async("/async-report").status_code == 429


def test_rate_limit_decorator_maps_to_429(memory: InMemoryAdapter) -> None:
    """RateLimitExceeded from @rate_limit views (sync and async) becomes a 429 via process_exception."""
    client = Client()
    assert client.get("/users/1").json() == {"user_id": 1}
    refused = client.get("/users/1")
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert client.get("/users/2").status_code == 200
    assert get_async("/async-users/1").status_code == 200
    assert get_async("/async-users/1").status_code == 429


def test_a_get_rule_limits_head_requests(memory: InMemoryAdapter) -> None:
    """Django calls the view for HEAD too: after two GETs of "2/minute", HEADs get 429 unserved."""
    SERVED.clear()
    rule = {"id": "counted", "method": "GET", "path": "/counted-items", "rate": "2/minute"}
    with override_settings(LIMIFY={"RULES": [rule], "STORAGE": memory}):
        client = Client()
        assert [client.get("/counted-items").status_code for _ in range(2)] == [200, 200]
        assert {client.head("/counted-items").status_code for _ in range(20)} == {429}
    assert SERVED == ["GET", "GET"]


def test_spoofed_forwarded_for_is_ignored(memory: InMemoryAdapter) -> None:
    """Without trusted proxies, X-Forwarded-For does not change the identity."""
    client = Client(REMOTE_ADDR="203.0.113.8")
    assert client.get("/items", headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    assert client.get("/items", headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 200
    assert client.get("/items", headers={"X-Forwarded-For": "3.3.3.3"}).status_code == 429


def test_trusted_proxy_and_identify_from_settings(memory: InMemoryAdapter) -> None:
    """TRUSTED_PROXIES and a dotted-path IDENTIFY hook are read from settings.LIMIFY."""
    limify_settings = {
        "RULES": RULES,
        "STORAGE": memory,
        "TRUSTED_PROXIES": ["10.0.0.0/8"],
        "IDENTIFY": "tests.test_web_django.identify_by_tenant",
        "DRAFT_HEADERS": True,
    }
    with override_settings(LIMIFY=limify_settings):
        proxied = Client(REMOTE_ADDR="10.1.2.3")
        for client_ip in ("198.51.100.1", "198.51.100.2"):
            response = proxied.get("/items", headers={"X-Forwarded-For": client_ip})
            assert response.status_code == 200 and response["RateLimit"] == '"items";r=1;t=30'
        assert [proxied.get("/items", headers={"X-Tenant": "t1"}).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]


def test_trusted_hops_from_settings(memory: InMemoryAdapter) -> None:
    """TRUSTED_HOPS=1: the rightmost X-Forwarded-For entry is the client; what it prepends is ignored."""
    with override_settings(LIMIFY={"RULES": RULES, "STORAGE": memory, "TRUSTED_HOPS": 1}):
        proxy = Client(REMOTE_ADDR="10.0.0.1")
        spoofs = [{"X-Forwarded-For": f"192.0.2.{n}, 198.51.100.1"} for n in range(3)]
        assert [proxy.get("/items", headers=header).status_code for header in spoofs] == [200, 200, 429]
        assert proxy.get("/items", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200


def identify_by_tenant(request: HttpRequest) -> dict[str, Any] | None:
    """An IDENTIFY hook: a tenant header (trusted here: set by the test's own gateway)."""
    tenant = request.headers.get("X-Tenant")
    return {"org_id": tenant} if tenant else None


def test_bad_settings_fail_clearly() -> None:
    """A misspelled LIMIFY key is a ValueError naming it."""
    from limify.adapters.django import LimifyMiddleware

    with override_settings(LIMIFY={"RULEZ": []}), pytest.raises(ValueError, match="RULEZ"):
        LimifyMiddleware(items)


def test_redis_down_is_fail_open_or_503(doomed_redis: RedisServer) -> None:
    """Redis stopped mid-test: fail_open passes (sync and async), the default fail_closed answers 503."""
    rules = [
        {"id": "items", "path": "/items", "rate": "1/minute", "on_storage_error": "fail_open"},
        {"id": "async-items", "path": "/async-items", "rate": "1/minute"},
    ]
    with override_settings(LIMIFY={"RULES": rules, "STORAGE": doomed_redis.url}):
        client = Client()
        # One call each while healthy: a refusal seen now would be known to hold (and answered
        # 429 in process) through the outage, which is not what this test is about.
        assert client.get("/items").status_code == 200 and get_async("/async-items").status_code == 200
        doomed_redis.stop()
        assert [client.get("/items").status_code for _ in range(2)] == [200, 200]  # beyond 1/minute
        closed = get_async("/async-items")
        assert closed.status_code == 503 and closed.json() == {"detail": "Rate limit storage unavailable"}
        assert closed["Retry-After"] == "1"


def test_rate_limit_views_with_redis_down_are_503_or_pass(
    doomed_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed: fail_closed @rate_limit views (sync, async) answer 503 + Retry-After, fail_open runs."""
    from limify import configure
    from limify.core.storage import default_storage

    _, previous, previous_policy = default_storage()
    configure(storage=doomed_redis.url, on_storage_error="fail_closed")
    SERVED.clear()
    try:
        with override_settings(LIMIFY={"RULES": [], "STORAGE": doomed_redis.url}):
            client = Client(raise_request_exception=False)
            healthy = [client.get(path).status_code for path in ("/users/1", "/open")]
            assert healthy == [200, 200]
            doomed_redis.kill()
            for refused in (client.get("/users/2"), get_async("/async-users/2"), client.get("/users/3")):
                assert refused.status_code == 503 and refused["Retry-After"] == "1"
                assert refused.json() == {"detail": "Rate limit storage unavailable"}
            assert [client.get("/open").status_code for _ in range(2)] == [200, 200]  # beyond 1/minute
    finally:
        configure(storage=previous, on_storage_error=previous_policy)
    assert SERVED == ["open", "open", "open"]
    # Django itself logs each 5xx response in one line ("Service Unavailable: /users/2"); no traceback.
    assert not [record for record in caplog.records if record.exc_info]
    errors = {
        record.getMessage().split(":")[0] for record in caplog.records if record.levelno >= logging.ERROR
    }
    assert errors == {"Service Unavailable"}


def test_limit_view_with_an_explicit_limify(clock: ManualClock) -> None:
    """limit_view(limify=...) uses that Limify's storage instead of the settings'."""
    own = Limify(config=LimifyConfig(), storage=InMemoryAdapter(clock=clock))
    view = limit_view("own", "1/minute", limify=own)(items)
    factory = RequestFactory()
    assert view(factory.get("/anything")).status_code == 200
    assert view(factory.get("/anything")).status_code == 429


def test_a_plan_below_the_cost_answers_503_never_500(memory: InMemoryAdapter) -> None:
    """A plan provider handing out 2/minute to a rule costing 5: the policy's 503, never a 500."""
    rule = {"id": "items", "method": "GET", "path": "/items", "rate": "10/minute", "cost": 5}
    tiny = {"RULES": [rule], "STORAGE": memory, "PLAN_PROVIDER": lambda context: Plan("tiny", 2, 60)}
    with override_settings(LIMIFY=tiny):
        client = Client(raise_request_exception=False)
        assert [client.get("/items").status_code for _ in range(3)] == [503] * 3
