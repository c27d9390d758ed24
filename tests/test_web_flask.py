"""Flask: the LimifyFlask extension and @rate_limit views, through Flask's test client."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask, g, request

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, Plan, Rule, rate_limit
from limify.adapters.flask import LimifyFlask
from tests.servers import RedisServer

RULES = [
    {"id": "items", "method": "GET", "path": "/items", "rate": "2/minute"},
    {"id": "login", "method": "POST", "path": "/login", "rate": "1/minute"},
]


def create_app(extension: LimifyFlask, **config: Any) -> Flask:
    """An app factory in the init_app style; `g.user_id` comes from a session header."""
    app = Flask(__name__)
    app.config.update(config)

    @app.before_request
    def authenticate() -> None:
        g.user_id = request.headers.get("X-Session") or None

    extension.init_app(app)

    @app.get("/items")
    def items() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/login")
    def login() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/open")
    def unruled() -> str:
        return "open"

    @app.get("/users/<int:user_id>")
    @rate_limit("1/minute", key="user_id", storage=app.config.get("VIEW_STORAGE", "memory://"))
    def user(user_id: int) -> dict[str, int]:
        return {"user_id": user_id}

    return app


def test_rules_from_app_config_and_headers(clock: ManualClock) -> None:
    """LIMIFY_* config builds the limits; responses carry headers; the third request is a 429."""
    app = create_app(LimifyFlask(), LIMIFY_RULES=RULES, LIMIFY_STORAGE=InMemoryAdapter(clock=clock))
    client = app.test_client()
    first = client.get("/items")
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "1"
    assert client.get("/items").status_code == 200
    blocked = client.get("/items")
    assert blocked.status_code == 429 and blocked.is_json
    assert blocked.get_json() == {"detail": "Too Many Requests", "retry_after": 30}
    assert blocked.headers["Retry-After"] == "30" and blocked.headers["X-RateLimit-Limit"] == "2"
    assert "X-RateLimit-Limit" not in client.get("/open").headers
    clock.advance(30)
    assert client.get("/items").status_code == 200


def test_identity_from_g_and_spoofing(clock: ManualClock) -> None:
    """g.user_id picks the bucket; X-Forwarded-For from an untrusted peer changes nothing."""
    limify = Limify(
        config=LimifyConfig(RULES, trusted_proxies=["10.0.0.0/8"]), storage=InMemoryAdapter(clock=clock)
    )
    app = create_app(LimifyFlask(limify=limify, draft_headers=True))
    client = app.test_client()
    assert client.post("/login", headers={"X-Session": "alice"}).status_code == 200
    assert client.post("/login", headers={"X-Session": "alice"}).status_code == 429
    assert client.post("/login", headers={"X-Session": "bob"}).headers["RateLimit"] == '"login";r=0;t=60'

    def login_from(remote_addr: str, forwarded_for: str) -> int:
        headers = {"X-Forwarded-For": forwarded_for}
        return client.post("/login", environ_base={"REMOTE_ADDR": remote_addr}, headers=headers).status_code

    assert login_from("203.0.113.1", "1.1.1.1") == 200  # an untrusted peer: X-Forwarded-For is ignored
    assert login_from("203.0.113.1", "2.2.2.2") == 429
    assert login_from("10.0.0.5", "198.51.100.1") == 200  # a trusted proxy: the client it names counts
    assert login_from("10.0.0.5", "198.51.100.2") == 200


def test_identify_hook(clock: ManualClock) -> None:
    """An identify hook receiving the request supplies context fields."""
    limify = Limify(config=LimifyConfig(RULES), storage=InMemoryAdapter(clock=clock))
    app = create_app(LimifyFlask(limify=limify, identify=lambda req: {"org_id": req.args.get("org")}))
    client = app.test_client()
    assert client.post("/login?org=a").status_code == 200
    assert client.post("/login?org=a").status_code == 429
    assert client.post("/login?org=b").status_code == 200


def test_rate_limit_decorator_on_flask_views(clock: ManualClock) -> None:
    """@rate_limit under @app.get keeps the endpoint name; its refusal becomes a 429 with Retry-After."""
    memory = InMemoryAdapter(clock=clock)
    app = create_app(LimifyFlask(limify=Limify(config=LimifyConfig(), storage=memory)), VIEW_STORAGE=memory)
    assert "user" in app.view_functions
    client = app.test_client()
    assert client.get("/users/1").get_json() == {"user_id": 1}
    refused = client.get("/users/1")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert client.get("/users/2").status_code == 200


def test_a_get_rule_limits_head_requests(clock: ManualClock) -> None:
    """Flask serves HEAD with the GET view: after two GETs of "2/minute", HEADs get 429 unserved."""
    served: list[str] = []
    rules = [Rule("items", "GET", "/counted-items", "2/minute")]
    app = create_app(LimifyFlask(), LIMIFY_RULES=rules, LIMIFY_STORAGE=InMemoryAdapter(clock=clock))

    @app.get("/counted-items")
    def counted() -> str:
        served.append(request.method)
        return "items"

    client = app.test_client()
    assert [client.get("/counted-items").status_code for _ in range(2)] == [200, 200]
    assert {client.head("/counted-items").status_code for _ in range(20)} == {429}
    assert served == ["GET", "GET"]


def test_one_extension_serves_several_apps(clock: ManualClock) -> None:
    """init_app on two apps keeps their limits apart."""
    extension = LimifyFlask()
    one = create_app(extension, LIMIFY_RULES=RULES, LIMIFY_STORAGE=InMemoryAdapter(clock=clock))
    two = create_app(extension, LIMIFY_RULES=[], LIMIFY_STORAGE=InMemoryAdapter(clock=clock))
    assert [one.test_client().post("/login").status_code for _ in range(2)] == [200, 429]
    assert [two.test_client().post("/login").status_code for _ in range(2)] == [200, 200]


def test_bad_config_fails_at_init_app() -> None:
    """A misspelled LIMIFY_ setting or a bad rule is a ValueError at start-up."""
    with pytest.raises(ValueError, match="RULEZ"):
        create_app(LimifyFlask(), LIMIFY_RULEZ=[])
    with pytest.raises(ValueError, match="rule 'x'"):
        create_app(LimifyFlask(), LIMIFY_RULES=[{"id": "x", "path": "/", "rate": "often"}])


def test_redis_down_is_fail_open_or_503(doomed_redis: RedisServer) -> None:
    """With the real redis-server stopped mid-test: fail_open rules pass, fail_closed ones answer 503."""
    rules = [
        Rule("items", "GET", "/items", "1/minute", on_storage_error="fail_open"),
        Rule("login", "POST", "/login", "1/minute", on_storage_error="fail_closed"),
    ]
    app = create_app(LimifyFlask(), LIMIFY_RULES=rules, LIMIFY_STORAGE=doomed_redis.url)
    client = app.test_client()
    assert client.get("/items").status_code == 200  # a refusal now would be known to hold (429)
    doomed_redis.stop()
    assert [client.get("/items").status_code for _ in range(3)] == [200, 200, 200]  # beyond 1/minute
    closed = client.post("/login")
    assert closed.status_code == 503 and closed.get_json() == {"detail": "Rate limit storage unavailable"}
    assert closed.headers["Retry-After"] == "1"


def test_rate_limit_view_with_redis_down_is_503_or_passes(
    doomed_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed: fail_closed @rate_limit views answer 503 + Retry-After, fail_open ones run; no traceback."""
    served: list[str] = []
    app = create_app(LimifyFlask(), LIMIFY_RULES=[], LIMIFY_STORAGE="memory://")

    @app.get("/closed")
    @rate_limit("1000/minute", storage=doomed_redis.url, on_storage_error="fail_closed")
    def closed() -> str:
        served.append("closed")
        return "closed"

    @app.get("/fail-open")
    @rate_limit("1/minute", storage=doomed_redis.url, on_storage_error="fail_open")
    def opened() -> str:
        served.append("open")
        return "open"

    client = app.test_client()
    assert [client.get(path).status_code for path in ("/closed", "/fail-open")] == [200, 200]
    doomed_redis.kill()
    for _ in range(3):
        refused = client.get("/closed")
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.get_json() == {"detail": "Rate limit storage unavailable"}
    assert [client.get("/fail-open").status_code for _ in range(3)] == [200, 200, 200]
    assert served == ["closed", "open", "open", "open", "open"]  # beyond 1/minute
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


def test_a_plan_below_the_cost_answers_503_never_500(clock: ManualClock) -> None:
    """A plan provider handing out 2/minute to a rule costing 5: the policy's 503, never a 500."""
    rule = {"id": "items", "method": "GET", "path": "/items", "rate": "10/minute", "cost": 5}
    app = create_app(
        LimifyFlask(), LIMIFY_RULES=[rule], LIMIFY_STORAGE=InMemoryAdapter(clock=clock),
        LIMIFY_PLAN_PROVIDER=lambda context: Plan("tiny", 2, 60),
    )  # fmt: skip
    client = app.test_client()
    assert [client.get("/items").status_code for _ in range(3)] == [503] * 3
