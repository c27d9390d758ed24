"""Limify on FastAPI: app-wide rules in a pure ASGI middleware, plus a per-route dependency.

Run:  python -m pip install '.[fastapi]' uvicorn httpx2 && uvicorn examples.fastapi_app:app
Then: curl -i localhost:8000/items   (the 4th call within a minute is a 429)
Or:   python examples/fastapi_app.py   (drives the app with Starlette's test client, which needs httpx2)

Set LIMIFY_STORAGE=redis://localhost:6379/0 to share the limits between processes.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from limify import Limify, LimifyConfig, LimitationResult, RateLimitExceeded, Rule, rate_limit
from limify.adapters.fastapi.dependencies import RateLimit, rate_limit_exceeded_handler
from limify.adapters.fastapi.middleware import LimifyMiddleware

STORAGE = os.environ.get("LIMIFY_STORAGE", "memory://")

limify = Limify(
    config=LimifyConfig(
        rules=[
            Rule("items", "GET", "/items", "3/minute", on_storage_error="fail_open"),
            Rule("login", "POST", "/login", "5/minute;20/day", priority=10),
        ],
        # Behind N reverse proxies, set trusted_hops=N (or list the proxies in
        # trusted_proxies) and start uvicorn with --no-proxy-headers.
        trusted_proxies=[],
    ),
    storage=STORAGE,
)

#: Module level, so that `Annotated[..., Depends(REPORTS)]` resolves with future annotations.
REPORTS = RateLimit("reports", "2/minute", limify=limify)


def identify(connection: Request) -> dict[str, str] | None:
    """Count requests carrying a (here: trivially) validated API key under that key."""
    api_key = connection.headers.get("x-api-key")
    return {"api_key": api_key} if api_key in {"demo-key-1", "demo-key-2"} else None


app = FastAPI()
app.add_middleware(LimifyMiddleware, limiter=limify, identify=identify, draft_headers=True)
app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)


@app.get("/items")
async def items() -> dict[str, list[str]]:
    return {"items": ["apple", "pear"]}


@app.post("/login")
async def login() -> dict[str, bool]:
    return {"ok": True}


@app.get("/reports")
async def reports(limit: Annotated[LimitationResult, Depends(REPORTS)]) -> dict[str, int]:
    return {"reports_left_this_minute": limit.remaining}


@app.get("/users/{user_id}")
@rate_limit("2/minute", key="user_id", storage=STORAGE)
async def user(user_id: int) -> dict[str, int]:
    return {"user_id": user_id}


if __name__ == "__main__":
    from fastapi.testclient import TestClient

    client = TestClient(app)
    for attempt in range(1, 5):
        response = client.get("/items")
        print(f"GET /items #{attempt}: {response.status_code}", dict(response.headers.items()))
