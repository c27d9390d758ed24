"""A plan provider choosing a plan whose limit is below the cost: a clear error, never a refusal forever.

No call of that cost could ever be admitted by that plan, so waiting is
pointless and a 429 would be a lie. The decorator raises :class:`limify.PlanError`
(a ``ValueError`` naming the plan, its limit and the cost) at once, also with
``on_exceeded="wait"``; web rules log it once and answer with their failure
policy, never with a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, Plan, PlanError, RequestContext, Rule
from limify import rate_limit
from limify.adapters.fastapi.middleware import LimifyMiddleware

TINY = Plan("tiny", 2, 60)


def tiny_plan(context: Any) -> Plan:
    """A plan provider that puts every caller on a plan of 2 per minute."""
    return TINY


def test_decorated_call_names_the_plan_its_limit_and_the_cost(clock: ManualClock) -> None:
    """A cost of 5 under a provider's 2/minute plan is a PlanError (a ValueError) naming all three."""

    @rate_limit("10/minute", cost=5, plan_provider=tiny_plan, storage=InMemoryAdapter(clock=clock))
    def upload() -> str:
        return "ok"

    with pytest.raises(ValueError, match=r"plan 'tiny' \(2 per 60s\), got 5") as raised:
        upload()
    assert isinstance(raised.value, PlanError)


def test_waiting_calls_raise_at_once_instead_of_waiting_forever(clock: ManualClock) -> None:
    """With on_exceeded='wait' and no max_wait, the call raises PlanError rather than sleeping for ever."""

    @rate_limit("10/minute", cost=5, plan_provider=tiny_plan, on_exceeded="wait",
                storage=InMemoryAdapter(clock=clock))  # fmt: skip
    def upload() -> str:
        return "ok"

    with pytest.raises(PlanError):
        upload()


@pytest.mark.anyio
async def test_async_decorated_call_raises_the_same(clock: ManualClock) -> None:
    """Async callables raise the same PlanError, also when waiting."""

    @rate_limit("10/minute", cost=5, plan_provider=tiny_plan, on_exceeded="wait",
                storage=InMemoryAdapter(clock=clock))  # fmt: skip
    async def upload() -> str:
        return "ok"

    with pytest.raises(PlanError, match="'tiny'"):
        await upload()


def app(clock: ManualClock, policy: str) -> Starlette:
    """A Starlette app whose only rule costs 5 while its plan provider hands out 2/minute."""

    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    config = LimifyConfig([Rule("items", "GET", "/items", "10/minute", cost=5, on_storage_error=policy)])
    limify = Limify(config=config, plan_provider=tiny_plan, storage=InMemoryAdapter(clock=clock))
    return Starlette(
        routes=[Route("/items", items)], middleware=[Middleware(LimifyMiddleware, limiter=limify)]
    )


def test_web_rule_under_fail_closed_answers_503_and_logs_once(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The middleware answers 503 (never 500) to every request, and logs the misconfiguration once."""
    client = TestClient(app(clock, "fail_closed"), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="limify"):
        statuses = [client.get("/items").status_code for _ in range(5)]
    assert statuses == [503] * 5
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "'tiny'" in errors[0].getMessage() and "got 5" in errors[0].getMessage()


def test_web_rule_under_fail_open_lets_requests_through(clock: ManualClock) -> None:
    """Under fail_open the policy's answer is to admit, without rate-limit headers."""
    client = TestClient(app(clock, "fail_open"), raise_server_exceptions=False)
    responses = [client.get("/items") for _ in range(3)]
    assert [response.status_code for response in responses] == [200] * 3
    assert all("X-RateLimit-Limit" not in response.headers for response in responses)


def test_limiter_check_raises_the_plan_error(clock: ManualClock) -> None:
    """Limiter.check() (the API frameworks build on) raises PlanError; decide() gives a 503 decision."""
    config = LimifyConfig([Rule("items", "GET", "/items", "10/minute", cost=5)])
    limiter = Limify(
        config=config, plan_provider=tiny_plan, storage=InMemoryAdapter(clock=clock)
    ).sync_limiter
    context = RequestContext(method="GET", path="/items", client_ip="10.0.0.1")
    assert limiter.decide(context).status == 503
    with pytest.raises(PlanError, match="'tiny'"):
        limiter.check(context)
