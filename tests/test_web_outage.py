"""A @rate_limit endpoint whose Redis is down, on Starlette/FastAPI: 503 or pass, never a 500 or a traceback.

The same policy as the middleware's own rules: under fail_closed the endpoint's
StorageError is answered 503 with Retry-After by LimifyMiddleware (or by
storage_error_handler without it); under fail_open the endpoint runs.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from limify import Limify, LimifyConfig, RateLimitExceeded, Rule, StorageError, rate_limit
from limify.adapters.fastapi.dependencies import RateLimit, rate_limit_exceeded_handler, storage_error_handler
from limify.adapters.fastapi.middleware import LimifyMiddleware
from tests.servers import RedisServer
from tests.uvicorn_server import uvicorn_serving

UNAVAILABLE = {"detail": "Rate limit storage unavailable"}


def outage_app(url: str, *, middleware: bool = True, handlers: bool = True) -> FastAPI:
    """An app whose /closed and /open endpoints are limited by @rate_limit on Redis at ``url``.

    The middleware's own rule covers /items only, so the endpoints' limits are the
    decorator's: fail_closed on /closed (async) and /sync-closed, fail_open on /open;
    /dependency is limited by a fail_closed RateLimit dependency.
    """
    app = FastAPI()
    if middleware:
        rules = [Rule("items", "GET", "/items", "1000000/minute", on_storage_error="fail_closed")]
        app.add_middleware(LimifyMiddleware, limiter=Limify(config=LimifyConfig(rules), storage=url))
    if handlers:
        app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)
        app.add_exception_handler(StorageError, storage_error_handler)
    served: list[str] = []
    app.state.served = served

    @app.get("/items")
    async def items() -> dict[str, bool]:
        return {"ok": True}

    on_redis = Limify(config=LimifyConfig(), storage=url)
    dependency = RateLimit("dep", "1000000/minute", limify=on_redis, on_storage_error="fail_closed")

    @app.get("/dependency", dependencies=[Depends(dependency)])
    async def limited_by_dependency() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/closed")
    @rate_limit("1000000/minute", storage=url, on_storage_error="fail_closed")
    async def closed() -> dict[str, bool]:
        served.append("closed")
        return {"ok": True}

    @app.get("/sync-closed")
    @rate_limit("1000000/minute", storage=url, on_storage_error="fail_closed")
    def sync_closed() -> dict[str, bool]:
        served.append("sync-closed")
        return {"ok": True}

    @app.get("/open")
    @rate_limit("1/minute", storage=url, on_storage_error="fail_open")
    async def opened() -> dict[str, bool]:
        served.append("open")
        return {"ok": True}

    @app.get("/open-fresh")
    @rate_limit("1/minute", storage=url, on_storage_error="fail_open")
    async def opened_fresh() -> dict[str, bool]:
        served.append("open-fresh")
        return {"ok": True}

    return app


@pytest.mark.parametrize(("middleware", "handlers"), [(True, False), (False, True), (True, True)])
def test_decorated_endpoint_with_redis_down_is_503_or_passes(
    doomed_redis: RedisServer, middleware: bool, handlers: bool
) -> None:
    """Redis killed: fail_closed @rate_limit endpoints answer 503 + Retry-After; fail_open ones run."""
    app = outage_app(doomed_redis.url, middleware=middleware, handlers=handlers)
    client = TestClient(app, raise_server_exceptions=False)
    assert [client.get("/open").status_code for _ in range(2)] == [200, 429]
    assert client.get("/closed").status_code == 200 and client.get("/sync-closed").status_code == 200
    doomed_redis.kill()
    for path in ("/closed", "/sync-closed", "/closed"):
        refused = client.get(path)
        assert (refused.status_code, refused.json()) == (503, UNAVAILABLE)
        assert refused.headers["Retry-After"] == "1" and "X-RateLimit-Limit" not in refused.headers
    # A refusal known before the outage holds until its reset, store or no store ...
    assert client.get("/open").status_code == 429
    # ... while calls the store would have to decide are let through by fail_open.
    assert [client.get("/open-fresh").status_code for _ in range(3)] == [200, 200, 200]
    assert app.state.served == ["open", "closed", "sync-closed", "open-fresh", "open-fresh", "open-fresh"]
    paths = ["/dependency", "/items"] if middleware else ["/dependency"]  # rules and dependencies alike
    for path in paths:
        refused = client.get(path)
        assert (refused.status_code, refused.headers["Retry-After"]) == (503, "1"), path


def recovered(outcomes: list[tuple[float, float, str, int | str]], lock: threading.Lock) -> bool:
    """Whether the last 48 requests (three per client) were all served."""
    with lock:
        return len(outcomes) >= 48 and all(status == 200 for *_, status in outcomes[-48:])


def test_uvicorn_under_load_answers_503_while_redis_is_down(
    doomed_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """16 concurrent clients on uvicorn, Redis killed for 1.5 s: only 503s meanwhile, no 500, no traceback."""
    caplog.set_level(logging.WARNING)
    # Logged through the root logger, so caplog sees what uvicorn would print.
    with uvicorn_serving(outage_app(doomed_redis.url), log_config=None, access_log=False) as base:
        outcomes: list[tuple[float, float, str, int | str]] = []  # start, end, path, status or error
        lock, stop = threading.Lock(), threading.Event()

        def client(index: int) -> None:
            path = ("/closed", "/sync-closed", "/items")[index % 3]
            with httpx.Client(base_url=base, timeout=10) as http:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        status: int | str = http.get(path).status_code
                    except httpx.HTTPError as exc:  # a dropped connection
                        status = repr(exc)
                    with lock:
                        outcomes.append((started, time.monotonic(), path, status))

        clients = [threading.Thread(target=client, args=(index,)) for index in range(16)]
        try:
            for worker in clients:
                worker.start()
            time.sleep(0.5)
            doomed_redis.kill()
            down = time.monotonic()
            time.sleep(1.5)
            up = time.monotonic()
            doomed_redis.restart()
            # Back once the failure policy's backoff lets a request probe the server again.
            deadline = time.monotonic() + 40
            while not recovered(outcomes, lock) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            for worker in clients:
                worker.join(15)
    during = [(path, status) for started, ended, path, status in outcomes if down < started and ended < up]
    assert during and {status for _, status in during} == {503}, set(during)
    assert {path for path, _ in during} == {"/closed", "/sync-closed", "/items"}
    assert {status for *_, status in outcomes} <= {200, 503}, "no 500, 429 or dropped connection"
    assert recovered(outcomes, lock), "back once Redis is"
    # The outage is logged once per switch by the failure policy, never once per request.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert len([r for r in caplog.records if r.name == "limify"]) <= 8 < len(during)
