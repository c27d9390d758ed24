"""A Starlette ``TestClient`` whose requests come from a chosen peer address.

``TestClient(app, client=(host, port))`` only exists from Starlette 0.44 on; this
sets the ASGI scope's ``client`` itself, so the tests also run on the declared
Starlette floor (see .ci/floors.txt).
"""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient


def client_from(app: Any, host: str, port: int) -> TestClient:
    """A TestClient of ``app`` whose HTTP and websocket requests have ``(host, port)`` as their peer."""

    async def from_peer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": (host, port)}
        await app(scope, receive, send)

    return TestClient(from_peer)
