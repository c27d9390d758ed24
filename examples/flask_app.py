"""Limify on Flask: the LimifyFlask extension configured from app.config.

Run:  python -m pip install '.[flask]' && flask --app examples.flask_app run
Then: curl -i localhost:5000/items   (the 4th call within a minute is a 429)
Or:   python examples/flask_app.py   (drives the app with Flask's test client)
"""

from __future__ import annotations

import os

from flask import Flask, g, request

from limify import rate_limit
from limify.adapters.flask import LimifyFlask

limits = LimifyFlask(draft_headers=True)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["LIMIFY_STORAGE"] = os.environ.get("LIMIFY_STORAGE", "memory://")
    app.config["LIMIFY_RULES"] = [
        {
            "id": "items",
            "method": "GET",
            "path": "/items",
            "rate": "3/minute",
            "on_storage_error": "fail_open",
        },
        {"id": "writes", "method": ["POST", "PUT", "DELETE"], "path": "/**", "rate": "10/minute"},
    ]

    @app.before_request
    def authenticate() -> None:
        # Registered before init_app, so the limits see g.user_id. Real apps check a session.
        g.user_id = request.headers.get("X-Demo-User") or None

    limits.init_app(app)

    @app.get("/items")
    def items() -> dict[str, list[str]]:
        return {"items": ["apple", "pear"]}

    @app.get("/users/<int:user_id>")
    @rate_limit("2/minute", key="user_id")
    def user(user_id: int) -> dict[str, int]:
        return {"user_id": user_id}

    return app


app = create_app()

if __name__ == "__main__":
    client = app.test_client()
    for attempt in range(1, 5):
        response = client.get("/items")
        print(f"GET /items #{attempt}: {response.status_code}", dict(response.headers.items()))
