"""Routes no rule of the ASGI middleware matches: passed on without a check of the middleware's own.

Nothing is identified or counted for them, yet they keep what runs inside them:
a ``RateLimit`` dependency's and the endpoint's ``@rate_limit`` limits, with the
middleware's one set of headers and its 429s.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.testclient import TestClient

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, Rule
from tests.test_web_features_asgi import build, rate_headers, reports_refused_on_the_third


def test_routes_no_rule_matches_keep_their_dependencies_and_decorators_limits(clock: ManualClock) -> None:
    """The middleware's only rule is /plain: on the other routes its identify hook is not asked and
    request.state.limited is False, while their dependencies' and @rate_limit's limits still give
    the one set of headers and the 429s."""
    asked: list[str] = []

    def identify(connection: Any) -> dict[str, str]:
        asked.append(connection.url.path)
        return {"user_id": "u1"}

    only_plain = LimifyConfig([Rule("plain", "GET", "/plain", "5/minute")])
    app = build(Limify(config=only_plain, storage=InMemoryAdapter(clock=clock)), identify=identify)

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        return {"limited": request.state.limited}

    client = TestClient(app)
    reports_refused_on_the_third(client)
    answers = [client.get("/decorated") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
    unlimited = client.get("/state")
    assert unlimited.json() == {"limited": False} and rate_headers(unlimited) == []
    assert client.get("/plain").headers["x-ratelimit-limit"] == "5"
    assert asked == ["/plain"]
