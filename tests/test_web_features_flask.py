"""Flask: the settings flask-limiter users write, errorhandler(429), one header set, exemptions,
stacking, penalties, annotations, the kill switch and each app's own memory, through Flask's test client."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest
from flask import Flask, g, jsonify, request

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, rate_limit
from limify.adapters.flask import LimifyFlask, TooManyRequests

ITEMS = [{"id": "items", "method": "GET", "path": "/items", "rate": "2/minute"}]


def create_app(extension: LimifyFlask | None = None, **config: Any) -> Flask:
    """An app factory: /items (ruled), /health, /soft, /decorated (@rate_limit 3/minute), /open."""
    app = Flask(__name__)
    app.config.update(config)
    (extension or LimifyFlask()).init_app(app)
    store = app.config.get("VIEW_STORE") or InMemoryAdapter()

    @app.get("/items")
    def items() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/soft")
    def soft() -> dict[str, Any]:
        return {"limited": g.get("limited", False)}

    @app.get("/open")
    def opened() -> str:
        return "open"

    @app.get("/decorated")
    @rate_limit("3/minute", storage=store, name="flask-decorated")
    def decorated() -> dict[str, bool]:
        return {"ok": True}

    return app


def limit_headers(response: Any) -> list[str]:
    return [name for name in response.headers.keys() if "ratelimit" in name.lower() or name == "Retry-After"]


def test_limify_headers_false_is_honoured(clock: ManualClock) -> None:
    """LIMIFY_HEADERS = False drops the X-RateLimit-* fields; refusals keep Retry-After."""
    app = create_app(LIMIFY_RULES=ITEMS, LIMIFY_STORAGE=InMemoryAdapter(clock=clock), LIMIFY_HEADERS=False)
    client = app.test_client()
    assert limit_headers(client.get("/items")) == []
    client.get("/items")
    refused = client.get("/items")
    assert refused.status_code == 429 and limit_headers(refused) == ["Retry-After"]


def test_header_settings_and_arguments(clock: ManualClock) -> None:
    """LIMIFY_HEADER_NAMES, LIMIFY_RETRY_AFTER and LIMIFY_DRAFT_HEADERS; an argument beats its setting."""
    names = {"limit": "RateLimit-Limit", "remaining": "RateLimit-Remaining", "reset": "RateLimit-Reset"}
    settings = {
        "LIMIFY_RULES": ITEMS, "LIMIFY_STORAGE": InMemoryAdapter(clock=clock), "LIMIFY_HEADER_NAMES": names,
        "LIMIFY_RETRY_AFTER": "http-date", "LIMIFY_DRAFT_HEADERS": True,
    }  # fmt: skip
    client = create_app(**settings).test_client()
    first = client.get("/items")
    assert first.headers["RateLimit-Limit"] == "2" and first.headers["RateLimit"] == '"items";r=1;t=30'
    client.get("/items")
    when = email.utils.parsedate_to_datetime(client.get("/items").headers["Retry-After"]).timestamp()
    assert 25 <= when - time.time() <= 35
    quiet = create_app(LimifyFlask(draft_headers=False), **{**settings, "LIMIFY_STORAGE": InMemoryAdapter()})
    assert "RateLimit" not in quiet.test_client().get("/items").headers
    with pytest.raises(ValueError, match="Flask config LIMIFY_\\*: retry_after must be one of"):
        create_app(LIMIFY_RULES=ITEMS, LIMIFY_RETRY_AFTER="soon")


def test_an_app_errorhandler_429_answers_every_refusal(clock: ManualClock) -> None:
    """@app.errorhandler(429) receives rules' and @rate_limit views' refusals; Limify's headers are added."""
    app = create_app(LIMIFY_RULES=ITEMS, LIMIFY_STORAGE=InMemoryAdapter(clock=clock))

    @app.errorhandler(429)
    def too_many(error: TooManyRequests) -> Any:
        return jsonify(message="slow down", wait=error.refusal.retry_after, limit=error.result.limit), 429

    client = app.test_client()
    for _ in range(2):
        client.get("/items")
    refused = client.get("/items")
    assert refused.get_json() == {"message": "slow down", "wait": 30, "limit": 2}
    assert refused.headers["Retry-After"] == "30" and refused.headers["X-RateLimit-Limit"] == "2"
    for _ in range(3):
        client.get("/decorated")
    decorated = client.get("/decorated")
    assert decorated.get_json()["message"] == "slow down" and decorated.headers["X-RateLimit-Limit"] == "3"


def test_without_an_errorhandler_the_refusal_is_limify_s_json(clock: ManualClock) -> None:
    """No errorhandler(429): the body is the one every adapter sends."""
    client = create_app(LIMIFY_RULES=ITEMS, LIMIFY_STORAGE=InMemoryAdapter(clock=clock)).test_client()
    for _ in range(2):
        client.get("/items")
    assert client.get("/items").get_json() == {"detail": "Too Many Requests", "retry_after": 30}


def test_decorated_views_carry_headers_and_one_set(clock: ManualClock) -> None:
    """A @rate_limit view's successes carry its headers; under a default rule, the most restrictive only."""
    default = {"id": "all", "rate": "600/minute"}
    client = create_app(
        LIMIFY_DEFAULT_RULE=default, LIMIFY_STORAGE=InMemoryAdapter(clock=clock)
    ).test_client()
    first = client.get("/decorated")
    assert (
        first.headers.getlist("X-RateLimit-Limit") == ["3"] and first.headers["X-RateLimit-Remaining"] == "2"
    )
    assert client.get("/open").headers["X-RateLimit-Limit"] == "600"


def test_exemptions_stacking_and_penalties_from_settings(clock: ManualClock) -> None:
    """LIMIFY_RULES with an exempt health check, LIMIFY_APPLICATION_LIMITS and LIMIFY_PENALTY."""
    rules = [{"id": "health", "path": "/health", "exempt": True}]
    client = create_app(
        LIMIFY_RULES=rules,
        LIMIFY_DEFAULT_RULE={"id": "all", "rate": "100/minute"},
        LIMIFY_APPLICATION_LIMITS="3/minute",
        LIMIFY_PENALTY={"after": "2/minute", "block": "1 hour"},
        LIMIFY_STORAGE=InMemoryAdapter(clock=clock),
    ).test_client()
    assert {client.get("/health").status_code for _ in range(10)} == {200}
    assert "X-RateLimit-Limit" not in client.get("/health").headers
    assert [client.get(path).status_code for path in ("/items", "/open", "/items", "/open", "/open")] == [
        200, 200, 200, 429, 429,
    ]  # fmt: skip
    clock.advance(61)  # the application window reopened; the penalty's block has not ended
    blocked = client.get("/items")
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) == 3600 - 61


def test_block_false_sets_g_limited(clock: ManualClock) -> None:
    """A rule with block=False lets refused requests in with g.limited = True."""
    rules = [{"id": "soft", "path": "/soft", "rate": "1/minute", "block": False}]
    client = create_app(LIMIFY_RULES=rules, LIMIFY_STORAGE=InMemoryAdapter(clock=clock)).test_client()
    assert [client.get("/soft").get_json() for _ in range(2)] == [{"limited": False}, {"limited": True}]


def test_key_shortcuts_and_exempt_when_from_settings(clock: ManualClock) -> None:
    """key="header:x-api-key" per key; LIMIFY_EXEMPT_WHEN receives Flask's request."""
    rules = [{"id": "items", "path": "/items", "rate": "1/minute", "key": "header:x-api-key"}]
    app = create_app(
        LIMIFY_RULES=rules,
        LIMIFY_EXEMPT_WHEN=lambda req: req.headers.get("x-internal") == "yes",
        LIMIFY_STORAGE=InMemoryAdapter(clock=clock),
    )
    client = app.test_client()
    assert [client.get("/items", headers={"x-api-key": key}).status_code for key in "aba"] == [200, 200, 429]
    assert client.get("/items", headers={"x-api-key": "a", "x-internal": "yes"}).status_code == 200


def test_limify_enabled_false_switches_the_app_off(clock: ManualClock) -> None:
    """LIMIFY_ENABLED = False: rules and @rate_limit views admit everything, without headers."""
    store = InMemoryAdapter(clock=clock)
    app = create_app(LIMIFY_RULES=ITEMS, LIMIFY_STORAGE=store, LIMIFY_ENABLED=False, VIEW_STORE=store)
    client = app.test_client()
    answers = [client.get(path) for path in ("/items", "/decorated") * 5]
    assert {response.status_code for response in answers} == {200}
    assert not any(limit_headers(response) for response in answers) and len(store) == 0
    given = create_app(LimifyFlask(limify=Limify(config=LimifyConfig(ITEMS))), LIMIFY_ENABLED=False)
    assert {given.test_client().get("/items").status_code for _ in range(4)} == {200}


def test_two_apps_never_share_counts() -> None:
    """Two app instances built from one factory (two test cases) each count in their own memory."""
    first, second = (create_app(LIMIFY_RULES=ITEMS).test_client() for _ in range(2))
    assert [first.get("/items").status_code for _ in range(3)] == [200, 200, 429]
    assert second.get("/items").status_code == 200


def test_settings_for_a_given_limify_are_refused() -> None:
    """LIMIFY_RULES beside LimifyFlask(limify=...) is an error naming the setting, not silently dropped."""
    with pytest.raises(ValueError, match="\\['LIMIFY_RULES'\\] configure a Limify"):
        create_app(LimifyFlask(limify=Limify(config=LimifyConfig())), LIMIFY_RULES=ITEMS)
    with pytest.raises(ValueError, match="unknown settings \\['HEADER'\\]"):
        create_app(LIMIFY_HEADER=False)


def test_an_identity_from_g_still_counts_under_stacking(clock: ManualClock) -> None:
    """g.user_id set before init_app's hook picks the identity of stacked checks too."""
    app = Flask(__name__)
    app.config.update(LIMIFY_DEFAULT_RULE={"id": "all", "rate": "1/minute"}, LIMIFY_APPLICATION_LIMITS="5/minute",
                      LIMIFY_STORAGE=InMemoryAdapter(clock=clock))  # fmt: skip

    @app.before_request
    def who() -> None:
        g.user_id = request.headers.get("X-User")

    LimifyFlask(app)

    @app.get("/me")
    def me() -> str:
        return "me"

    client = app.test_client()
    assert [client.get("/me", headers={"X-User": user}).status_code for user in ("ann", "ann", "bob")] == [
        200, 429, 200,
    ]  # fmt: skip


def test_pasted_rates_cost_callables_and_ipv6_grouping(clock: ManualClock) -> None:
    """Rates pasted from limits ("1 per 5 minutes"), a cost read from the request, one bucket per IPv6 /64."""
    rules = [
        {"id": "items", "path": "/items", "rate": "4 per 5 minutes", "cost": lambda req: int(req.args["n"])},
        {"id": "open", "path": "/open", "rate": "10/5m"},
    ]
    client = create_app(LIMIFY_RULES=rules, LIMIFY_STORAGE=InMemoryAdapter(clock=clock)).test_client()
    assert [client.get(f"/items?n={n}").status_code for n in (3, 2, 1)] == [200, 429, 200]
    assert client.get("/items?n=1").headers["X-RateLimit-Reset"] == "300"
    one_slash_64 = [f"2001:db8:5:6::{n:x}" for n in range(1, 12)]
    statuses = [client.get("/open", environ_base={"REMOTE_ADDR": ip}).status_code for ip in one_slash_64]
    assert statuses == [200] * 10 + [429]
    assert client.get("/open", environ_base={"REMOTE_ADDR": "2001:db8:5:7::1"}).status_code == 200
