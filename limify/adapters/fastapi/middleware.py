"""LimifyMiddleware: a pure ASGI middleware for Starlette, FastAPI and any ASGI app.

For each HTTP request it builds a :class:`~limify.RequestContext` from the scope,
asks the async limiter for a decision, and either answers 429 / 503 itself or
calls the app with a ``send`` that adds the rate-limit headers to its response.
It keeps no per-request state on ``self``. Lifespan scopes, and websocket scopes
unless ``websockets=True``, pass through untouched.

Identity: ``user_id``, ``org_id`` and ``api_key`` are read from the request state
(``request.state.user_id`` ...) that an outer middleware set, then from the
``identify`` hook, which receives a ``starlette.requests.HTTPConnection`` and
returns a dict of context fields (or an awaitable of one). The client IP comes
from the socket peer, and from the forwarding header only behind the config's
trusted proxies.

A ``RateLimitExceeded`` raised by a ``@rate_limit`` endpoint below becomes a 429
too, and a ``StorageError`` (its storage unreachable under ``fail_closed``) a 503
with ``Retry-After``, like a rule's, as long as the response has not started. The
failure policy logs the outage once per switch; the middleware logs nothing per
request, and no traceback reaches the server.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from limify.adapters.http import (
    IDENTITY_FIELDS,
    build_context,
    error_body,
    exceeded_headers,
    rate_limit_headers,
    unavailable_headers,
)
from limify.core.context import RequestContext
from limify.core.limify import Limify
from limify.core.limiter import AsyncLimiter
from limify.core.rules import LimifyConfig
from limify.errors import RateLimitExceeded, StorageError

__all__ = ["LimifyMiddleware", "async_limiter_of", "context_from_scope", "Identify"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``(connection) -> dict of context fields`` (or an awaitable of one).
Identify = Callable[[Any], Any]

_WEBSOCKET_TRY_AGAIN_LATER = 1013


def async_limiter_of(limiter: Limify | AsyncLimiter) -> AsyncLimiter:
    """The async limiter of a :class:`~limify.Limify`, or ``limiter`` itself if it is one."""
    if isinstance(limiter, Limify):
        return limiter.async_limiter
    if isinstance(limiter, AsyncLimiter):
        return limiter
    raise TypeError(
        f"an ASGI app needs a limify.Limify or its async_limiter, got {limiter!r}"
        " (a sync limiter would block the event loop on Redis)"
    )


def _header_getter(scope: Scope) -> Callable[[str], list[str]]:
    def values(name: str) -> list[str]:
        wanted = name.encode("latin-1")
        return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == wanted]

    return values


async def context_from_scope(scope: Scope, config: LimifyConfig, identify: Identify | None) -> RequestContext:
    """The :class:`~limify.RequestContext` of an HTTP or websocket scope (see module docs)."""
    state = scope.get("state") or {}
    fields: dict[str, Any] = {name: state.get(name) for name in IDENTITY_FIELDS}
    if identify is not None:
        from starlette.requests import HTTPConnection

        found = identify(HTTPConnection(scope))
        if inspect.isawaitable(found):
            found = await found
        if found is not None:
            if not isinstance(found, Mapping):
                raise TypeError(f"identify must return a dict of context fields or None, got {found!r}")
            fields.update(found)
    client = scope.get("client")
    return build_context(
        config,
        method=scope.get("method", "GET"),
        path=scope.get("path", "/"),
        peer=client[0] if client else None,
        forwarded=_header_getter(scope),
        fields=fields,
    )


async def _send_error(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class LimifyMiddleware:
    """Apply a :class:`~limify.Limify`'s rules to every request of an ASGI app.

    Args:
        app: the ASGI app to wrap.
        limiter: a :class:`~limify.Limify` (its async limiter is used) or an
            :class:`~limify.core.limiter.AsyncLimiter`.
        identify: a hook supplying context fields (see module docs).
        headers: add the ``X-RateLimit-*`` headers.
        draft_headers: add the IETF draft ``RateLimit`` / ``RateLimit-Policy`` headers.
        websockets: also limit websocket connections (a refused one is closed
            with code 1013, "try again later").
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: Limify | AsyncLimiter,
        *,
        identify: Identify | None = None,
        headers: bool = True,
        draft_headers: bool = False,
        websockets: bool = False,
    ) -> None:
        if identify is not None and not callable(identify):
            raise TypeError(f"identify must be a callable (connection) -> dict, got {identify!r}")
        self.app = app
        self.limiter = async_limiter_of(limiter)
        self.identify = identify
        self.headers = headers
        self.draft_headers = draft_headers
        self.websockets = websockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and not (kind == "websocket" and self.websockets):
            await self.app(scope, receive, send)
            return
        context = await context_from_scope(scope, self.limiter.config, self.identify)
        decision = await self.limiter.decide(context)
        status = decision.status
        if status != 200 and kind == "websocket":
            await send({"type": "websocket.close", "code": _WEBSOCKET_TRY_AGAIN_LATER})
            return
        extra = rate_limit_headers(decision, headers=self.headers, draft_headers=self.draft_headers)
        if status != 200:
            await _send_error(send, status, extra, error_body(status, decision.result))
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        await self._call_app(scope, receive, send, [(n.lower().encode(), v.encode()) for n, v in extra])

    async def _call_app(
        self, scope: Scope, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except RateLimitExceeded as exc:
            if started:
                raise
            await _send_error(send, 429, exceeded_headers(exc), error_body(429, exc.result))
        except StorageError:
            if started:
                raise
            await _send_error(send, 503, unavailable_headers(), error_body(503))
