"""FastAPI and Starlette, through the real TestClient and a real uvicorn server on loopback.

(The apps are built inside functions, so dependencies are given as defaults,
``Depends(...)``: with postponed annotations FastAPI could not see a local
``Annotated[..., Depends(local)]``.)

One set of headers whatever combination of middleware, dependencies and
``@rate_limit`` applies; one 429 body; refusal hooks; exemptions; stacking;
penalties; annotate instead of block; the kill switch; the dependency on the
application's Limify; set-ups that could not answer a refusal fail saying what to add.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.testclient import TestClient

from limify import (
    InMemoryAdapter,
    Limify,
    LimifyConfig,
    LimitationResult,
    ManualClock,
    RateLimitExceeded,
    Rule,
    StorageError,
    configure,
    rate_limit,
)
from limify.adapters.fastapi.dependencies import (
    MISSING_SETUP,
    RateLimit,
    rate_limit_exceeded_handler,
    storage_error_handler,
)
from limify.adapters.fastapi.middleware import LimifyMiddleware
from limify.adapters.http import Refusal
from limify.core.algorithms.penalty import Penalty
from tests.uvicorn_server import uvicorn_serving

BODY_30 = {"detail": "Too Many Requests", "retry_after": 30}


def rate_headers(response: Any) -> list[tuple[str, str]]:
    """Every rate-limit header of a response, repeated ones included, lower-cased."""
    return [
        (name.lower(), value)
        for name, value in response.headers.multi_items()
        if "ratelimit" in name.lower() or name.lower() == "retry-after"
    ]


def reports_refused_on_the_third(client: TestClient) -> Any:
    """/reports' RateLimit (2/minute): the first answer carries its headers, the third is its 429."""
    first = client.get("/reports")
    assert rate_headers(first) == [
        ("x-ratelimit-limit", "2"),
        ("x-ratelimit-remaining", "1"),
        ("x-ratelimit-reset", "30"),
    ]
    client.get("/reports")
    refused = client.get("/reports")
    assert refused.status_code == 429 and refused.json() == BODY_30
    return refused


def build(
    limify: Limify | None, *, middleware: bool = True, handlers: bool = False, **options: Any
) -> FastAPI:
    """An app with a limited route, a dependency route, a @rate_limit route and one combining them."""
    app = FastAPI()
    if middleware:
        assert limify is not None
        app.add_middleware(LimifyMiddleware, limiter=limify, **options)
    if handlers:
        app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)
        app.add_exception_handler(StorageError, storage_error_handler)
    reports = RateLimit("reports", "2/minute", limify=None if middleware else limify)
    exports = RateLimit("exports", "5/minute", limify=None if middleware else limify)
    store = InMemoryAdapter()

    @app.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/reports")
    async def report(limit: LimitationResult = Depends(reports)) -> dict[str, int]:  # noqa: B008
        return {"left": limit.remaining}

    @app.get("/both", dependencies=[Depends(reports), Depends(exports)])
    async def both() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/decorated")
    @rate_limit("3/minute", storage=store, name="decorated")
    async def decorated() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/sync-decorated")
    @rate_limit("3/minute", storage=store, name="sync-decorated")
    def sync_decorated() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/decorated-and-dependency", dependencies=[Depends(exports)])
    @rate_limit("3/minute", storage=store, name="mixed")
    async def mixed() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture
def limify(clock: ManualClock) -> Limify:
    """Middleware rules: a default rule of 600/minute over a private store on the manual clock."""
    return Limify(
        config=LimifyConfig(default_rule=Rule("all", rate="600/minute")), storage=InMemoryAdapter(clock=clock)
    )


def test_middleware_and_a_dependency_send_one_set_of_headers(limify: Limify) -> None:
    """Middleware 600/minute + RateLimit 2/minute: one X-RateLimit-Limit, the dependency's (most restrictive)."""
    client = TestClient(build(limify))
    refused = reports_refused_on_the_third(client)
    assert [name for name, _ in rate_headers(refused)].count("x-ratelimit-limit") == 1
    assert refused.headers["retry-after"] == "30" and refused.headers["x-ratelimit-limit"] == "2"


def test_two_dependencies_and_a_decorator_each_give_one_set(limify: Limify) -> None:
    """Two dependencies on one route, and @rate_limit beside a dependency: one set, the most restrictive."""
    client = TestClient(build(limify))
    both = client.get("/both")
    assert [n for n, _ in rate_headers(both)].count("x-ratelimit-limit") == 1 and both.headers[
        "x-ratelimit-limit"
    ] == "2"
    mixed = client.get("/decorated-and-dependency")
    assert mixed.headers["x-ratelimit-limit"] == "3" and mixed.headers["x-ratelimit-remaining"] == "2"
    assert [n for n, _ in rate_headers(mixed)].count("x-ratelimit-limit") == 1


def test_a_decorated_endpoint_carries_headers_and_refuses_with_429(limify: Limify) -> None:
    """@rate_limit endpoints (async and sync) under the middleware: headers on success, 429 after."""
    client = TestClient(build(limify))
    for path in ("/decorated", "/sync-decorated"):
        statuses = []
        for left in ("2", "1", "0"):
            response = client.get(path)
            statuses.append(response.status_code)
            assert (
                response.headers["x-ratelimit-limit"] == "3"
                and response.headers["x-ratelimit-remaining"] == left
            )
        refused = client.get(path)
        assert statuses == [200] * 3 and refused.status_code == 429
        assert refused.json()["detail"] == "Too Many Requests" and int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize("middleware", [True, False])
def test_the_dependency_body_is_everyone_s_body(limify: Limify, middleware: bool) -> None:
    """The dependency's 429 carries retry_after like the middleware's, with or without the middleware."""
    client = TestClient(build(limify, middleware=middleware, handlers=not middleware))
    assert [client.get("/reports").status_code for _ in range(2)] == [200, 200]
    refused = client.get("/reports")
    assert (refused.status_code, refused.json()) == (429, BODY_30)
    assert rate_headers(refused) == [
        ("retry-after", "30"), ("x-ratelimit-limit", "2"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "60"),
    ]  # fmt: skip


def test_without_middleware_the_handler_answers_decorated_refusals(limify: Limify) -> None:
    """Handlers only: a @rate_limit refusal is a 429 with the same body (never a 500)."""
    client = TestClient(build(limify, middleware=False, handlers=True), raise_server_exceptions=False)
    assert [client.get("/decorated").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert client.get("/decorated").json()["detail"] == "Too Many Requests"


def test_a_dependency_in_an_app_that_cannot_answer_refusals_says_what_to_add(limify: Limify) -> None:
    """No middleware, no handler: the dependency fails on its first request, naming what to add."""
    client = TestClient(build(limify, middleware=False))
    with pytest.raises(RuntimeError, match="add app.add_middleware\\(LimifyMiddleware") as info:
        client.get("/reports")
    assert MISSING_SETUP in str(info.value)


def test_a_dependency_without_limify_uses_the_application_s(clock: ManualClock) -> None:
    """RateLimit without limify=: the middleware's Limify, else app.state.limify, else a clear error."""
    store = InMemoryAdapter(clock=clock)
    own = Limify(config=LimifyConfig(trusted_hops=1), storage=store)
    app = FastAPI()
    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)
    app.add_exception_handler(StorageError, storage_error_handler)
    limit = RateLimit("hop", "1/minute")

    @app.get("/hop", dependencies=[Depends(limit)])
    async def hop() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    with pytest.raises(RuntimeError, match="RateLimit\\('hop'\\) has no Limify: pass limify="):
        client.get("/hop")
    app.state.limify = own
    forwarded = {"X-Forwarded-For": "198.51.100.1"}
    assert client.get("/hop", headers=forwarded).status_code == 200
    assert (
        client.get("/hop", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    )  # trusted_hops used
    assert client.get("/hop", headers=forwarded).status_code == 429
    assert (
        len(store) == 2 and own.peek("hop", ("ip", "198.51.100.1")).allowed is False
    )  # adopted by the Limify


def test_a_dependency_method_limits_only_that_method(limify: Limify) -> None:
    """RateLimit("submit", "1/minute", method="POST") on a GET+POST route: GETs are never counted."""
    app = FastAPI()
    app.add_middleware(LimifyMiddleware, limiter=limify)
    submit = RateLimit("submit", "1/minute", method="POST")

    @app.api_route("/form", methods=["GET", "POST"], dependencies=[Depends(submit)])
    async def form() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert [client.get("/form").status_code for _ in range(3)] == [200, 200, 200]
    assert [client.post("/form").status_code for _ in range(2)] == [200, 429]


def test_on_refused_answers_with_a_response_of_its_own(limify: Limify) -> None:
    """LimifyMiddleware(on_refused=...) returns its body; Limify's headers are added to it."""
    seen: list[Refusal] = []

    async def refused(request: Request, refusal: Refusal) -> PlainTextResponse:
        seen.append(refusal)
        return PlainTextResponse(f"slow down, {request.url.path}: {refusal.retry_after}s", status_code=429)

    client = TestClient(build(limify, on_refused=refused))
    for _ in range(2):
        client.get("/reports")
    answer = client.get("/reports")
    assert (answer.status_code, answer.text) == (429, "slow down, /reports: 30s")
    assert answer.headers["retry-after"] == "30" and answer.headers["x-ratelimit-limit"] == "2"
    assert seen[0].status == 429 and seen[0].result.limit == 2 and seen[0].body.startswith(b'{"detail"')


def test_an_exception_handler_of_your_own_renders_refusals(limify: Limify) -> None:
    """app.add_exception_handler(RateLimitExceeded, mine): dependencies and decorators go through it."""
    app = build(limify)

    async def mine(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RateLimitExceeded)
        return JSONResponse({"error": "rate", "wait": exc.retry_after}, status_code=429)

    app.add_exception_handler(RateLimitExceeded, mine)
    client = TestClient(app)
    for _ in range(3):
        client.get("/decorated")
    refused = client.get("/decorated")
    assert refused.json()["error"] == "rate" and refused.headers["x-ratelimit-limit"] == "3"
    assert [n for n, _ in rate_headers(refused)].count("retry-after") == 1


def test_header_names_and_http_date_retry_after(limify: Limify) -> None:
    """header_names renames the fields; retry_after="http-date" sends the date the wait ends."""
    names = {"limit": "RateLimit-Limit", "remaining": "RateLimit-Remaining", "reset": "RateLimit-Reset"}
    client = TestClient(build(limify, header_names=names, retry_after="http-date"))
    first = client.get("/reports")
    assert first.headers["ratelimit-limit"] == "2" and "x-ratelimit-limit" not in first.headers
    client.get("/reports")
    refused = client.get("/reports")
    when = email.utils.parsedate_to_datetime(refused.headers["retry-after"]).timestamp()
    assert 25 <= when - time.time() <= 35
    with pytest.raises(ValueError, match="header_names: unknown keys \\['limits'\\]"):
        LimifyMiddleware(FastAPI(), limify, header_names={"limits": "X"})
    with pytest.raises(ValueError, match="retry_after must be one of"):
        LimifyMiddleware(FastAPI(), limify, retry_after="date")


def test_block_false_annotates_the_request_instead(clock: ManualClock) -> None:
    """Rule(block=False): refused requests reach the endpoint with request.state.limited set."""
    rules = [Rule("soft", path="/soft", rate="1/minute", block=False)]
    limify = Limify(config=LimifyConfig(rules), storage=InMemoryAdapter(clock=clock))
    app = FastAPI()
    app.add_middleware(LimifyMiddleware, limiter=limify)
    degrade = RateLimit("degrade", "1/minute", block=False)

    @app.get("/soft")
    async def soft(request: Request) -> dict[str, Any]:
        decision = request.state.limify_decision
        return {"limited": request.state.limited, "limit": decision.result.limit}

    @app.get("/degrade")
    async def degraded(request: Request, limit: LimitationResult = Depends(degrade)) -> dict[str, Any]:  # noqa: B008
        return {"full": not limit.allowed, "limited": request.state.limited}

    client = TestClient(app)
    assert client.get("/soft").json() == {"limited": False, "limit": 1}
    annotated = client.get("/soft")
    assert annotated.status_code == 200 and annotated.json() == {"limited": True, "limit": 1}
    assert "retry-after" not in annotated.headers and annotated.headers["x-ratelimit-remaining"] == "0"
    assert [client.get("/degrade").json()["full"] for _ in range(2)] == [False, True]


def test_exemptions_through_the_middleware(clock: ManualClock) -> None:
    """A health check exempt from the default rule, and an exempt_when hook receiving the Starlette request."""
    config = LimifyConfig(
        [Rule("health", "GET", "/health", exempt=True)],
        default_rule=Rule(
            "all", rate="1/minute", exempt_when=lambda request: request.headers.get("x-internal") == "1"
        ),
    )
    app = build(Limify(config=config, storage=InMemoryAdapter(clock=clock)))

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    checks = [client.get("/health") for _ in range(5)]
    assert {response.status_code for response in checks} == {200} and not rate_headers(checks[0])
    assert [client.get("/plain", headers={"x-internal": "1"}).status_code for _ in range(3)] == [
        200,
        200,
        200,
    ]
    assert [client.get("/plain").status_code for _ in range(2)] == [200, 429]


def test_application_limits_stack_on_every_route(clock: ManualClock) -> None:
    """application_limits="3/minute" over routes of 600/minute: the fourth request anywhere is refused."""
    config = LimifyConfig(default_rule=Rule("all", rate="600/minute"), application_limits="3/minute")
    client = TestClient(build(Limify(config=config, storage=InMemoryAdapter(clock=clock))))
    statuses = [client.get(path).status_code for path in ("/plain", "/reports", "/plain", "/plain")]
    assert statuses == [200, 200, 200, 429]
    assert client.get("/plain").headers["x-ratelimit-limit"] == "3"


def test_a_penalty_blocks_repeat_offenders(clock: ManualClock) -> None:
    """penalty=Penalty("2/minute", "1 hour"): after two refusals, an hour's Retry-After on every route."""
    config = LimifyConfig(
        [Rule("login", "POST", "/login", "1/minute")], penalty=Penalty("2/minute", "1 hour")
    )
    app = build(Limify(config=config, storage=InMemoryAdapter(clock=clock)))

    @app.post("/login")
    async def login() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert [client.post("/login").status_code for _ in range(3)] == [200, 429, 429]
    clock.advance(61)
    blocked = client.post("/login")
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) == 3600 - 61


def test_header_keys_and_the_kill_switch(clock: ManualClock) -> None:
    """key="header:x-api-key" counts per key; configure(enabled=False) turns every limit off, headers too."""
    config = LimifyConfig([Rule("api", path="/plain", rate="1/minute", key="header:x-api-key")])
    client = TestClient(build(Limify(config=config, storage=InMemoryAdapter(clock=clock))))
    assert client.get("/plain", headers={"x-api-key": "a"}).status_code == 200
    assert client.get("/plain", headers={"x-api-key": "b"}).status_code == 200
    assert client.get("/plain", headers={"x-api-key": "a"}).status_code == 429
    configure(enabled=False)
    try:
        answers = [client.get(path, headers={"x-api-key": "a"}) for path in ("/plain", "/decorated") * 4]
        assert {response.status_code for response in answers} == {200}
        assert not any(rate_headers(response) for response in answers)
    finally:
        configure(enabled=True)
    assert client.get("/plain", headers={"x-api-key": "a"}).status_code == 429


# --- a real uvicorn server on loopback ------------------------------------------------------------


@pytest.fixture
def served(clock: ManualClock) -> Iterator[str]:
    """The app of these tests under uvicorn on a free loopback port: its base URL."""
    config = LimifyConfig(
        [Rule("health", "GET", "/health", exempt=True)],
        default_rule=Rule("all", rate="600/minute"),
        application_limits="6/minute",
    )
    app = build(Limify(config=config, storage=InMemoryAdapter(clock=clock)))

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    with uvicorn_serving(app) as base:
        yield base


def test_uvicorn_headers_exemption_and_stacking(served: str) -> None:
    """Over real HTTP: one header set (dependency + middleware), exempt health checks, the stacked limit."""
    with httpx.Client(base_url=served) as http:
        report = http.get("/reports")
        assert report.status_code == 200
        assert [v for n, v in report.headers.multi_items() if n.lower() == "x-ratelimit-limit"] == ["2"]
        health = [http.get("/health") for _ in range(10)]
        assert {r.status_code for r in health} == {200} and not any(rate_headers(r) for r in health)
        statuses = [http.get("/plain").status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]  # 6 per minute across routes, the report included
        refused = http.get("/decorated")
        assert refused.status_code == 429 and refused.json()["retry_after"] >= 1
        assert refused.headers["x-ratelimit-limit"] == "6"


def test_dependency_hooks_receive_the_starlette_request(limify: Limify) -> None:
    """A RateLimit's key and cost callables get the request itself (headers, query, path params)."""
    seen: list[Any] = []

    def tenant(request: Request) -> str:
        seen.append(request)
        return request.query_params.get("tenant", "none")

    app = build(limify)
    per_tenant = RateLimit("tenants", "1/minute", key=tenant, cost=lambda request: 1)

    @app.get("/tenant", dependencies=[Depends(per_tenant)])
    async def by_tenant() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert [client.get(f"/tenant?tenant={t}").status_code for t in ("a", "b", "a")] == [200, 200, 429]
    assert all(isinstance(request, Request) for request in seen)


def test_ipv6_clients_are_grouped_by_their_slash_64(clock: ManualClock) -> None:
    """Through the middleware: addresses of one /64 share a bucket; ipv6_prefix=128 separates them."""
    for prefix, expected in ((64, [200, 429, 429]), (128, [200, 200, 200])):
        config = LimifyConfig([Rule("all", rate="1/minute")], ipv6_prefix=prefix)
        app = build(Limify(config=config, storage=InMemoryAdapter(clock=clock)))
        answers = [
            TestClient(_from_peer(app, f"2001:db8:7:8::{n}")).get("/plain").status_code for n in (1, 2, 3)
        ]
        assert answers == expected, prefix


def _from_peer(app: Any, host: str) -> Any:
    """``app`` as if every connection came from ``host`` (TestClient's own ``client=`` needs Starlette 0.38)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await app(dict(scope, client=(host, 50000)) if scope["type"] == "http" else scope, receive, send)

    return asgi
