"""Django: limit_view's method, the settings django-ratelimit users write (ENABLED, REFUSED_VIEW,
block=False's request.limited), key shortcuts, exemptions, stacking and one header set, through
Django's test clients (sync and async)."""

from __future__ import annotations

import asyncio
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:  # the same settings as tests/test_web_django.py, whichever runs first
    settings.configure(
        DEBUG=False,
        SECRET_KEY="limify-tests",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="tests.test_web_django",
        INSTALLED_APPS=[],
        MIDDLEWARE=["tests.test_web_django.FakeAuthMiddleware", "limify.adapters.django.LimifyMiddleware"],
        LIMIFY={},
    )
    django.setup()

from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from limify import InMemoryAdapter, ManualClock, rate_limit  # noqa: E402
from limify.adapters.django import limit_view  # noqa: E402

STORE = InMemoryAdapter()


@limit_view("submit", "1/minute", method="POST")
def submit(request: HttpRequest) -> HttpResponse:
    """GET shows the form, POST submits it: only POSTs are limited."""
    return HttpResponse(request.method)


@limit_view("soft", "1/minute", block=False)
def soft(request: HttpRequest) -> JsonResponse:
    """A view that degrades instead of refusing."""
    return JsonResponse({"limited": request.limited})


@limit_view("by-key", "1/minute", key="header:x-api-key")
async def by_key(request: HttpRequest) -> HttpResponse:
    """An async view counted per API key."""
    return HttpResponse("key")


@rate_limit("3/minute", storage=STORE, name="django-decorated")
def decorated(request: HttpRequest) -> HttpResponse:
    """A @rate_limit view: its headers come through the middleware."""
    return HttpResponse("decorated")


def plain(request: HttpRequest) -> HttpResponse:
    """A view only the settings limit."""
    return HttpResponse("plain")


def refused_view(request: HttpRequest, exception: Any) -> HttpResponse:
    """A REFUSED_VIEW, as django-ratelimit's RATELIMIT_VIEW."""
    return HttpResponse(f"wait {exception.refusal.retry_after}s", status=429, content_type="text/plain")


urlpatterns = [
    path("submit", submit),
    path("soft", soft),
    path("by-key", by_key),
    path("decorated", decorated),
    path("plain", plain),
    path("health", plain),
]


@pytest.fixture
def limify_settings(clock: ManualClock) -> Any:
    """This module's URLs, and a LIMIFY dict on a private store (each test adds to it)."""

    def apply(**extra: Any) -> Any:
        return override_settings(
            ROOT_URLCONF=__name__, LIMIFY={"STORAGE": InMemoryAdapter(clock=clock), **extra}
        )

    STORE.clear(list(STORE._data))
    return apply


def test_limit_view_with_a_method_counts_only_that_method(limify_settings: Any) -> None:
    """limit_view(..., method="POST"): GETs are never counted, the second POST is refused."""
    with limify_settings():
        client = Client()
        assert [client.get("/submit").status_code for _ in range(4)] == [200] * 4
        assert [client.post("/submit").status_code for _ in range(2)] == [200, 429]


def test_block_false_sets_request_limited(limify_settings: Any) -> None:
    """limit_view(block=False): the view runs with request.limited telling it was over the limit."""
    with limify_settings():
        client = Client()
        assert [client.get("/soft").json() for _ in range(2)] == [{"limited": False}, {"limited": True}]


def test_enabled_false_switches_everything_off(limify_settings: Any) -> None:
    """LIMIFY["ENABLED"] = False: rules, limit_view and @rate_limit views admit all, without headers."""
    rules = [{"id": "plain", "path": "/plain", "rate": "1/minute"}]
    with limify_settings(RULES=rules, ENABLED=False):
        client = Client()
        answers = [client.get(url) for url in ("/plain", "/soft", "/decorated") * 4]
        answers += [client.post("/submit") for _ in range(3)]
        assert {answer.status_code for answer in answers} == {200}
        assert not any(answer.has_header("X-RateLimit-Limit") for answer in answers) and len(STORE) == 0


def test_refused_view_answers_429s_with_limify_s_headers(limify_settings: Any) -> None:
    """REFUSED_VIEW (a dotted path) renders rule and @rate_limit refusals; Retry-After is added."""
    rules = [{"id": "plain", "path": "/plain", "rate": "1/minute"}]
    with limify_settings(RULES=rules, REFUSED_VIEW="tests.test_web_features_django.refused_view"):
        client = Client()
        client.get("/plain")
        refused = client.get("/plain")
        assert (refused.status_code, refused.content) == (429, b"wait 60s") and refused["Retry-After"] == "60"
        for _ in range(3):
            client.get("/decorated")
        decorated_refusal = client.get("/decorated")
        assert decorated_refusal.content.startswith(b"wait") and decorated_refusal["X-RateLimit-Limit"] == "3"


def test_one_header_set_for_settings_rules_views_and_decorators(limify_settings: Any) -> None:
    """Under a 600/minute default rule: a limit_view's and a @rate_limit view's own limit is the one sent."""
    with limify_settings(DEFAULT_RULE={"id": "all", "rate": "600/minute"}, HEADER_NAMES={"limit": "X-Limit"}):
        client = Client()
        assert client.post("/submit")["X-Limit"] == "1"
        assert client.get("/decorated")["X-Limit"] == "3" and client.get("/plain")["X-Limit"] == "600"
        assert not client.get("/plain").has_header("X-RateLimit-Limit")


def test_exemptions_and_stacking_from_settings(limify_settings: Any) -> None:
    """An exempt health check, and APPLICATION_LIMITS on top of every rule."""
    rules = [{"id": "health", "path": "/health", "exempt": True}]
    settings_ = {
        "RULES": rules,
        "DEFAULT_RULE": {"id": "all", "rate": "100/minute"},
        "APPLICATION_LIMITS": "2/minute",
    }
    with limify_settings(**settings_):
        client = Client()
        assert {client.get("/health").status_code for _ in range(6)} == {200}
        assert [client.get(url).status_code for url in ("/plain", "/decorated", "/plain")] == [200, 200, 429]


def test_header_keys_in_async_mode(limify_settings: Any) -> None:
    """key="header:x-api-key" on an async view through Django's ASGI handler: one bucket per key."""

    async def go() -> list[int]:
        client = AsyncClient()
        keys = ["a", "b", "a"]
        return [(await client.get("/by-key", headers={"x-api-key": key})).status_code for key in keys]

    with limify_settings():
        assert asyncio.run(go()) == [200, 200, 429]
