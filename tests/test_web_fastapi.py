"""FastAPI: the middleware and dependency on real Redis, @rate_limit endpoints, storage failure, uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from limify import (
    InMemoryAdapter,
    Limify,
    LimifyConfig,
    LimitationResult,
    ManualClock,
    RateLimitExceeded,
    Rule,
    configure,
    get_default_storage,
    rate_limit,
)
from limify.adapters.fastapi.dependencies import RateLimit, rate_limit_exceeded_handler
from limify.adapters.fastapi.middleware import LimifyMiddleware
from tests.servers import RedisServer
from tests.uvicorn_server import uvicorn_serving

#: Declared at module level, as applications do: with `from __future__ import annotations`
#: FastAPI resolves `Annotated[..., Depends(REPORT_LIMIT)]` through the module's globals.
#: No limify= given, so it uses the application's: the middleware's Limify.
REPORT_LIMIT = RateLimit("report", "2/minute")

RULES = [
    Rule("items", "GET", "/items", "2/minute", on_storage_error="fail_open"),
    Rule("login", "POST", "/login", "1/minute", on_storage_error="fail_closed"),
]


def build_app(limify: Limify, memory: Any = None) -> FastAPI:
    """A FastAPI app with the middleware, dependency-limited routes and @rate_limit routes."""
    app = FastAPI()
    app.add_middleware(LimifyMiddleware, limiter=limify)
    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)

    @app.get("/items")
    async def items() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/login")
    async def login() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/report", dependencies=[Depends(REPORT_LIMIT)])
    async def report() -> dict[str, str]:
        return {"report": "ready"}

    @app.get("/quota")
    async def quota(limit: Annotated[LimitationResult, Depends(REPORT_LIMIT)]) -> dict[str, int]:
        return {"remaining": limit.remaining}

    @app.get("/users/{user_id}")
    @rate_limit("1/minute", key="user_id", storage=memory or "memory://")
    async def user(user_id: int, request: Request, verbose: bool = False) -> dict[str, Any]:
        return {"user_id": user_id, "verbose": verbose}

    @app.get("/sync-users/{user_id}")
    @rate_limit("1/minute", key="user_id", storage=memory or "memory://")
    def sync_user(user_id: int) -> dict[str, Any]:
        return {"user_id": user_id}

    return app


@pytest.fixture(autouse=True)
def default_storage(clock: ManualClock) -> Iterator[InMemoryAdapter]:
    """A fresh in-memory process default for each test, restored afterwards."""
    previous = get_default_storage()
    memory = InMemoryAdapter(clock=clock)
    configure(storage=memory)
    yield memory
    configure(storage=previous)


@pytest.fixture
def redis_limify(redis_url: str) -> Limify:
    """A Limify on the test Redis (its async limiter uses redis.asyncio)."""
    return Limify(config=LimifyConfig(RULES), storage=redis_url)


def test_middleware_on_real_redis(redis_limify: Limify, redis_url: str) -> None:
    """Through FastAPI's TestClient on Redis: 2 admitted, then 429; keys follow the seed format."""
    import redis

    client = TestClient(build_app(redis_limify))
    assert [client.get("/items").status_code for _ in range(3)] == [200, 200, 429]
    keys = redis.Redis.from_url(redis_url).keys("limify:items:*")
    assert keys == [b"limify:items:default:ip:testclient"]


def test_dependency_with_annotated_and_future_annotations(clock: ManualClock) -> None:
    """A RateLimit dependency limits its routes, shares its bucket between them and returns the result."""
    client = TestClient(build_app(Limify(config=LimifyConfig())))
    first = client.get("/quota")
    assert first.json() == {"remaining": 1} and first.headers["X-RateLimit-Remaining"] == "1"
    assert client.get("/report").json() == {"report": "ready"}
    refused = client.get("/report")
    assert refused.status_code == 429 and refused.json() == {"detail": "Too Many Requests", "retry_after": 30}
    assert refused.headers["Retry-After"] == "30" and refused.headers["X-RateLimit-Limit"] == "2"
    clock.advance(30)
    assert client.get("/quota").status_code == 200


def test_rate_limit_decorator_keeps_fastapi_injection(clock: ManualClock) -> None:
    """@rate_limit under @app.get keeps path, query and Request injection; its refusal is a 429."""
    memory = InMemoryAdapter(clock=clock)
    limify = Limify(config=LimifyConfig(), storage=memory)
    client = TestClient(build_app(limify, memory))
    assert client.get("/users/7?verbose=true").json() == {"user_id": 7, "verbose": True}
    refused = client.get("/users/7")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert client.get("/users/8").status_code == 200
    assert client.get("/users/x").status_code == 422  # validation still runs before the limit
    assert client.get("/sync-users/1").status_code == 200
    assert client.get("/sync-users/1").status_code == 429
    schema = client.get("/openapi.json").json()
    params = {p["name"] for p in schema["paths"]["/users/{user_id}"]["get"]["parameters"]}
    assert params == {"user_id", "verbose"}


def test_a_get_rule_limits_head_on_a_get_and_head_route(clock: ManualClock) -> None:
    """A FastAPI route serving GET and HEAD: after two GETs of "2/minute", HEADs get 429 unserved."""
    served: list[str] = []
    app = FastAPI()
    catalog_rule = Rule("catalog", "GET", "/catalog", "2/minute")
    app.add_middleware(LimifyMiddleware, limiter=Limify(config=LimifyConfig([catalog_rule])))

    @app.api_route("/catalog", methods=["GET", "HEAD"])
    async def catalog(request: Request) -> dict[str, bool]:
        served.append(request.method)
        return {"ok": True}

    client = TestClient(app)
    assert [client.get("/catalog").status_code for _ in range(2)] == [200, 200]
    assert {client.head("/catalog").status_code for _ in range(20)} == {429}
    assert served == ["GET", "GET"]


def test_redis_down_means_fail_open_or_503_never_500(doomed_redis: RedisServer) -> None:
    """With the redis-server stopped mid-test, fail_open routes pass and fail_closed ones answer 503."""
    limify = Limify(config=LimifyConfig(RULES), storage=doomed_redis.url)
    client = TestClient(build_app(limify), raise_server_exceptions=False)
    assert client.get("/items").status_code == 200
    assert client.post("/login").status_code == 200  # a refusal now would be known to hold (429)
    doomed_redis.stop()
    for _ in range(3):
        opened = client.get("/items")
        assert opened.status_code == 200 and "X-RateLimit-Limit" not in opened.headers
    closed = client.post("/login")
    assert closed.status_code == 503 and closed.headers["Retry-After"] == "1"
    assert closed.json() == {"detail": "Rate limit storage unavailable"}


def test_uvicorn_server_over_http(redis_url: str) -> None:
    """A real uvicorn server on a loopback port, driven over HTTP with httpx, limits on Redis."""
    limify = Limify(config=LimifyConfig(RULES), storage=redis_url)
    with uvicorn_serving(build_app(limify), lifespan="on") as base, httpx.Client(base_url=base) as http:
        statuses = [http.get("/items").status_code for _ in range(3)]
        blocked = http.get("/items")
        spoofed = http.get("/items", headers={"X-Forwarded-For": "192.0.2.77"})
    assert statuses == [200, 200, 429]
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert blocked.headers["x-ratelimit-limit"] == "2" and blocked.json()["detail"] == "Too Many Requests"
    assert spoofed.status_code == 429  # the header from an untrusted peer changes nothing
