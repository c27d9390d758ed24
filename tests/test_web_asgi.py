"""LimifyMiddleware on Starlette through its TestClient: statuses, headers, identity, pass-through."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, RateLimitExceeded, Rule, rate_limit
from limify.adapters.fastapi.dependencies import rate_limit_exceeded_handler
from limify.adapters.fastapi.middleware import LimifyMiddleware
from tests.asgi_client import client_from

RULES = [
    Rule("items", "GET", "/items", "3/minute"),
    Rule("burst", "*", "/burst/**", "2/second;3/minute"),
    Rule("open", "GET", "/free/**", "1000/minute", priority=-1),
]


async def items(request: Request) -> JSONResponse:
    """A plain endpoint."""
    return JSONResponse({"ok": True})


async def hello(websocket: WebSocket) -> None:
    """A websocket that says hello."""
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def build(
    clock: ManualClock, *, rules: list[Rule] = RULES, trusted: list[str] | None = None, **options: Any
) -> Starlette:
    """A Starlette app limited by LimifyMiddleware on an in-memory store."""
    config = LimifyConfig(rules, trusted_proxies=trusted or [])
    limify = Limify(config=config, storage=InMemoryAdapter(clock=clock))
    routes = [
        Route("/items", items),
        Route("/burst/{name}", items),
        Route("/free/{name}", items),
        Route("/unruled", items),
        WebSocketRoute("/ws", hello),
    ]
    return Starlette(routes=routes, middleware=[Middleware(LimifyMiddleware, limiter=limify, **options)])


def test_blocked_requests_get_429_with_json_and_headers(clock: ManualClock) -> None:
    """The fourth request in a minute is a 429 with a JSON body, Retry-After and X-RateLimit-*."""
    client = TestClient(build(clock))
    remaining = []
    for _ in range(3):
        response = client.get("/items")
        assert response.status_code == 200 and response.json() == {"ok": True}
        assert response.headers["X-RateLimit-Limit"] == "3"
        remaining.append(response.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    blocked = client.get("/items")
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == "application/json"
    assert blocked.json() == {"detail": "Too Many Requests", "retry_after": 20}
    assert blocked.headers["Retry-After"] == "20"
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert blocked.headers["X-RateLimit-Reset"] == "60"


def test_retry_after_is_rounded_up_and_honoured(clock: ManualClock) -> None:
    """Retry-After is whole seconds rounded up; waiting that long is enough to be admitted."""
    client = TestClient(build(clock))
    for _ in range(3):
        client.get("/items")
    clock.advance(0.5)
    blocked = client.get("/items")
    assert blocked.headers["Retry-After"] == "20"  # 19.5 s rounded up
    clock.advance(int(blocked.headers["Retry-After"]))
    assert client.get("/items").status_code == 200


def test_compound_rule_and_draft_headers(clock: ManualClock) -> None:
    """A compound rule refuses on its tightest limit; draft RateLimit headers name each policy."""
    client = TestClient(build(clock, draft_headers=True))
    first = client.get("/burst/a")
    assert first.headers["RateLimit-Policy"] == '"burst-1s";q=2;w=1, "burst-60s";q=3;w=60'
    assert first.headers["RateLimit"] == '"burst-1s";r=1;t=1'
    assert client.get("/burst/b").status_code == 200
    assert client.get("/burst/a").status_code == 429
    clock.advance(1)
    assert client.get("/burst/c").status_code == 200
    refused = client.get("/burst/c")
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit"] == "3"


def test_headers_can_be_switched_off(clock: ManualClock) -> None:
    """headers=False drops X-RateLimit-* but a 429 still carries Retry-After."""
    client = TestClient(build(clock, rules=[Rule("items", "GET", "/items", "1/minute")], headers=False))
    assert "X-RateLimit-Limit" not in client.get("/items").headers
    blocked = client.get("/items")
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    assert "X-RateLimit-Limit" not in blocked.headers


def test_unmatched_paths_are_not_limited_and_carry_no_headers(clock: ManualClock) -> None:
    """A path no rule matches is served every time, without rate-limit headers."""
    client = TestClient(build(clock))
    for _ in range(5):
        response = client.get("/unruled")
        assert response.status_code == 200 and "X-RateLimit-Limit" not in response.headers


def test_lifespan_and_websockets_pass_through(clock: ManualClock) -> None:
    """Lifespan events reach the app; websockets are not limited unless asked."""
    started = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    config = LimifyConfig([Rule("all", rate="1/minute")])
    limify = Limify(config=config, storage=InMemoryAdapter(clock=clock))
    app = Starlette(
        routes=[WebSocketRoute("/ws", hello)],
        middleware=[Middleware(LimifyMiddleware, limiter=limify)],
        lifespan=lifespan,
    )
    with TestClient(app) as client:
        assert started == [True]
        for _ in range(3):
            with client.websocket_connect("/ws") as ws:
                assert ws.receive_text() == "hello"


def test_websockets_can_be_limited(clock: ManualClock) -> None:
    """With websockets=True a refused websocket is closed before it is accepted."""
    client = TestClient(build(clock, rules=[Rule("ws", "GET", "/ws", "1/minute")], websockets=True))
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "hello"
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/ws"):
            pass
    assert closed.value.code == 1013


def test_identity_from_request_state_and_identify_hook(clock: ManualClock) -> None:
    """request.state.user_id set by an outer middleware, or an identify hook, picks the bucket."""

    class FakeAuth:
        """Sets request.state.user_id from a trusted session header, like real auth would."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                scope.setdefault("state", {})["user_id"] = headers.get(b"x-session", b"").decode() or None
            await self.app(scope, receive, send)

    config = LimifyConfig([Rule("items", "GET", "/items", "1/minute")])
    limify = Limify(config=config, storage=InMemoryAdapter(clock=clock))
    keys = {"k-alice": "org-a", "k-bob": "org-b"}

    def identify(connection: Any) -> dict[str, Any] | None:
        org = keys.get(connection.headers.get("x-api-key", ""))  # a validated API key
        return {"org_id": org} if org else None

    app = Starlette(
        routes=[Route("/items", items)],
        middleware=[Middleware(FakeAuth), Middleware(LimifyMiddleware, limiter=limify, identify=identify)],
    )
    client = TestClient(app)
    assert client.get("/items", headers={"x-session": "alice"}).status_code == 200
    assert client.get("/items", headers={"x-session": "alice"}).status_code == 429
    assert client.get("/items", headers={"x-session": "bob"}).status_code == 200
    assert client.get("/items", headers={"x-api-key": "k-alice"}).status_code == 200
    assert client.get("/items", headers={"x-api-key": "k-alice"}).status_code == 429
    assert client.get("/items", headers={"x-api-key": "k-bob"}).status_code == 200
    assert client.get("/items", headers={"x-api-key": "forged"}).status_code == 200  # falls to the IP
    assert client.get("/items", headers={"x-api-key": "forged-2"}).status_code == 429  # same IP


def test_a_client_cannot_choose_its_ip_by_header(clock: ManualClock) -> None:
    """X-Forwarded-For counts only from trusted proxies; rotating it does not buy new buckets."""
    app = build(clock, rules=[Rule("items", "GET", "/items", "1/minute")], trusted=["10.0.0.0/8"])
    direct = client_from(app, "203.0.113.5", 1234)
    assert direct.get("/items", headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    assert direct.get("/items", headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 429
    via_proxy = client_from(app, "10.0.0.7", 1234)
    assert via_proxy.get("/items", headers={"X-Forwarded-For": "9.9.9.9, 198.51.100.1"}).status_code == 200
    assert via_proxy.get("/items", headers={"X-Forwarded-For": "8.8.8.8, 198.51.100.1"}).status_code == 429
    assert via_proxy.get("/items", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    # The proxy's own address is not where the client comes from: the Forwarded header is not read.
    assert via_proxy.get("/items", headers={"Forwarded": "for=198.51.100.3"}).status_code == 200
    assert via_proxy.get("/items", headers={"Forwarded": "for=198.51.100.4"}).status_code == 429


def test_rate_limit_decorator_on_starlette_endpoints(clock: ManualClock) -> None:
    """@rate_limit on a Starlette endpoint maps to 429 via the handler, or via the middleware alone."""
    memory = InMemoryAdapter(clock=clock)

    @rate_limit("1/minute", storage=memory, key=lambda request: request.query_params.get("who"))
    async def limited(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    with_handler = Starlette(
        routes=[Route("/x", limited)], exception_handlers={RateLimitExceeded: rate_limit_exceeded_handler}
    )
    client = TestClient(with_handler)
    assert client.get("/x?who=a").text == "hi"
    refused = client.get("/x?who=a")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert refused.json()["retry_after"] == 60
    assert client.get("/x?who=b").status_code == 200

    limify = Limify(config=LimifyConfig(), storage=memory)
    with_middleware = Starlette(
        routes=[Route("/x", limited)], middleware=[Middleware(LimifyMiddleware, limiter=limify)]
    )
    client = TestClient(with_middleware)
    assert client.get("/x?who=c").status_code == 200
    refused = client.get("/x?who=c")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"


def test_a_get_rule_limits_head_requests(clock: ManualClock) -> None:
    """Starlette runs the GET endpoint for HEAD: after two GETs of "2/minute", HEADs get 429 unserved."""
    served: list[str] = []

    async def counted(request: Request) -> PlainTextResponse:
        served.append(request.method)
        return PlainTextResponse("items")

    config = LimifyConfig([Rule("items", "GET", "/items", "2/minute")])
    limify = Limify(config=config, storage=InMemoryAdapter(clock=clock))
    middleware = [Middleware(LimifyMiddleware, limiter=limify)]
    app = Starlette(routes=[Route("/items", counted)], middleware=middleware)
    client = TestClient(app)
    assert [client.get("/items").status_code for _ in range(2)] == [200, 200]
    assert {client.head("/items").status_code for _ in range(20)} == {429}
    assert served == ["GET", "GET"]
    clock.advance(30)  # one token back: a HEAD takes it, from the GET rule's bucket
    assert client.head("/items").status_code == 200 and client.get("/items").status_code == 429
    assert served == ["GET", "GET", "HEAD"]


def test_middleware_refuses_a_sync_limiter() -> None:
    """A sync limiter (which would block the loop on Redis) is a TypeError at set-up."""
    limify = Limify(config=LimifyConfig())
    with pytest.raises(TypeError, match="async_limiter"):
        LimifyMiddleware(items, limiter=limify.sync_limiter)  # type: ignore[arg-type]
