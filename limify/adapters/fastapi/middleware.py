"""LimifyMiddleware: a pure ASGI middleware for Starlette, FastAPI and any ASGI app.

For each HTTP request it builds a :class:`~limify.RequestContext` from the scope,
asks the async limiter for a decision, and either answers 429 / 503 itself or
calls the app with a ``send`` that writes the rate-limit headers on its response.
A request that no rule matches (by the scope's method and path) is passed on
without building a context when the config has no application-wide limits: no
``identify`` call and no storage for routes nothing limits, while its request
scope still collects the decisions of dependencies and ``@rate_limit`` endpoints.
It keeps no per-request state on ``self``. Lifespan scopes, and websocket scopes
unless ``websockets=True``, pass through untouched.

One set of headers: the middleware opens the request's
:class:`~limify.core.request_scope.RequestScope` (``scope["limify.scope"]``), in
which ``RateLimit`` dependencies and the endpoint's own ``@rate_limit`` add their
decisions; when the response starts it removes any rate-limit header an inner
layer wrote and writes the headers of the most restrictive decision. Inner layers
also find the middleware's :class:`~limify.Limify` there (a ``RateLimit``
without ``limify=`` uses it).

Identity: ``user_id``, ``org_id`` and ``api_key`` are read from the request state
(``request.state.user_id`` ...) that an outer middleware set, then from the
``identify`` hook, which receives a ``starlette.requests.HTTPConnection`` and
returns a dict of context fields (or an awaitable of one). The client IP comes
from the socket peer, and from the forwarding header only behind the config's
trusted proxies. A rule with ``block=False`` lets a refused request through with
``request.state.limited = True`` and the decision in ``request.state.limify_decision``.

A ``RateLimitExceeded`` raised below (a ``@rate_limit`` endpoint's, a
dependency's) becomes a 429 too, and a ``StorageError`` (storage unreachable under
``fail_closed``) a 503 with ``Retry-After``, like a rule's, as long as the
response has not started; ``on_refused(request, refusal)`` may answer any of them
with a response of its own. The failure policy logs the outage once per switch;
the middleware logs nothing per request, and no traceback reaches the server.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from limify.adapters.headers import ResponseOptions, decision_headers
from limify.adapters.http import (
    IDENTITY_FIELDS,
    Refusal,
    build_context,
    exceeded_decision,
    refusal,
    refusal_for_exception,
)
from limify.core.context import RequestContext
from limify.core.decision import UNLIMITED, Decision
from limify.core.limify import Limify
from limify.core.limiter import AsyncLimiter
from limify.core.request_scope import RequestScope, enter, leave
from limify.core.rules import LimifyConfig
from limify.errors import RateLimitExceeded, StorageError

__all__ = [
    "LimifyMiddleware",
    "async_limiter_of",
    "context_from_scope",
    "Identify",
    "SCOPE_KEY",
    "LIMIFY_KEY",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``(connection) -> dict of context fields`` (or an awaitable of one).
Identify = Callable[[Any], Any]
#: ``(request, refusal) -> starlette Response`` (or an awaitable of one).
OnRefused = Callable[[Any, Refusal], Any]

#: Where the request's RequestScope, and the middleware itself, live in the ASGI scope.
SCOPE_KEY = "limify.scope"
LIMIFY_KEY = "limify.middleware"

_WEBSOCKET_TRY_AGAIN_LATER = 1013
#: The decision of a request no rule and no application-wide limit applies to.
_NOT_LIMITED = Decision(UNLIMITED)


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


class _HeaderValues:
    """``(name) -> the values of request header name`` over an ASGI scope (one object, no closure)."""

    __slots__ = ("scope",)

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def __call__(self, name: str) -> list[str]:
        wanted = name.lower().encode("latin-1")
        return [
            value.decode("latin-1") for key, value in self.scope.get("headers", ()) if key.lower() == wanted
        ]


def _connection(scope: Scope, receive: Receive | None = None) -> Any:
    """A Starlette ``Request`` (HTTP) or ``HTTPConnection`` (websocket) over ``scope``."""
    from starlette.requests import HTTPConnection, Request

    if scope.get("type") == "http":
        return Request(scope, receive) if receive is not None else Request(scope)
    return HTTPConnection(scope)


async def context_from_scope(
    scope: Scope,
    config: LimifyConfig,
    identify: Identify | None,
    receive: Receive | None = None,
    connection: Any = None,
) -> RequestContext:
    """The :class:`~limify.RequestContext` of an HTTP or websocket scope (see module docs).

    ``connection`` is the Starlette request rule hooks receive, when the caller has one.
    """
    state = scope.get("state") or {}
    fields: dict[str, Any] = {name: state.get(name) for name in IDENTITY_FIELDS}
    if identify is not None:
        connection = connection if connection is not None else _connection(scope, receive)
        found = identify(connection)
        if inspect.isawaitable(found):
            found = await found
        if found is not None:
            if not isinstance(found, Mapping):
                raise TypeError(f"identify must return a dict of context fields or None, got {found!r}")
            fields.update(found)
    if connection is None and config.needs_request:
        connection = _connection(scope, receive)
    client = scope.get("client")
    headers = _HeaderValues(scope)
    return build_context(
        config,
        method=scope.get("method", "GET"),
        path=scope.get("path", "/"),
        peer=client[0] if client else None,
        forwarded=headers,
        fields=fields,
        headers=headers,
        request=connection,
    )


def annotate(scope: Scope, decision: Decision) -> None:
    """``request.state.limited`` (whether a limit met so far refused it) and ``limify_decision``."""
    state = scope.setdefault("state", {})
    status = decision.status
    counted = status == 503 or decision.limited
    state["limited"] = bool(state.get("limited")) or (counted and status != 200)
    if counted:
        state["limify_decision"] = decision


def _raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def _send_error(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw + _raw(headers)})
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
        header_names: other names for the headers (``{"limit": "RateLimit-Limit"}``,
            keys ``limit``, ``remaining``, ``reset``, ``retry_after``).
        retry_after: ``"delta-seconds"`` (default) or ``"http-date"``.
        on_refused: ``(request, refusal) -> Response`` (sync or async): a response
            of your own for refusals (see :class:`~limify.adapters.http.Refusal`);
            Limify's headers are added to it.
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
        header_names: Mapping[str, str] | None = None,
        retry_after: str = "delta-seconds",
        on_refused: OnRefused | None = None,
        websockets: bool = False,
    ) -> None:
        if identify is not None and not callable(identify):
            raise TypeError(f"identify must be a callable (connection) -> dict, got {identify!r}")
        if on_refused is not None and not callable(on_refused):
            raise TypeError(
                f"on_refused must be a callable (request, refusal) -> Response, got {on_refused!r}"
            )
        self.app = app
        self.limify = limiter if isinstance(limiter, Limify) else None
        self.limiter = async_limiter_of(limiter)
        self.identify = identify
        self.options = ResponseOptions(headers, draft_headers, header_names, retry_after)
        #: The header names the middleware writes, as raw lower-case header bytes.
        self._managed = frozenset(name.encode("latin-1") for name in self.options.managed)
        self.on_refused = on_refused
        self.websockets = websockets

    @property
    def headers(self) -> bool:
        return self.options.headers

    @property
    def draft_headers(self) -> bool:
        return self.options.draft_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and not (kind == "websocket" and self.websockets):
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        request_scope = RequestScope(enabled=limiter.enabled, asgi_scope=scope)
        scope[SCOPE_KEY] = request_scope
        scope[LIMIFY_KEY] = self
        token = enter(request_scope)
        try:
            config = limiter.config
            if (
                not config.application_plans
                and config.match(scope.get("method", "GET"), scope.get("path", "/")) is None
            ):
                # No rule and no application-wide limit applies: nothing to identify or count.
                decision = _NOT_LIMITED
            else:
                context = await context_from_scope(scope, config, self.identify, receive)
                decision = await limiter.decide(context)
            annotate(scope, decision)
            if decision.status != 200 and decision.blocks:
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": _WEBSOCKET_TRY_AGAIN_LATER})
                else:
                    await self.refuse(scope, receive, send, refusal(decision, self.options))
                return
            if kind == "websocket":
                await self.app(scope, receive, send)
                return
            await self._call_app(scope, receive, send, request_scope)
        finally:
            leave(token)
            request_scope.close()

    async def refuse(self, scope: Scope, receive: Receive, send: Send, answer: Refusal) -> None:
        """Send ``answer``: Limify's response, or ``on_refused``'s with Limify's headers added."""
        if self.on_refused is None:
            await _send_error(send, answer.status, answer.headers, answer.body)
            return
        response = self.on_refused(_connection(scope, receive), answer)
        if inspect.isawaitable(response):
            response = await response
        for name, value in answer.headers:
            if name not in response.headers:
                response.headers[name] = value
        await response(scope, receive, send)

    async def _call_app(
        self, scope: Scope, receive: Receive, send: Send, request_scope: RequestScope
    ) -> None:
        writer = _HeaderWriter(send, request_scope, self.options, self._managed)
        try:
            await self.app(scope, receive, writer)
        except (RateLimitExceeded, StorageError) as exc:
            if writer.started:
                raise
            if isinstance(exc, RateLimitExceeded):
                request_scope.add(exceeded_decision(exc))
            answer = refusal_for_exception(exc, self.options)
            assert answer is not None
            if isinstance(exc, RateLimitExceeded):
                deciding = request_scope.deciding()
                if deciding is not None and deciding.status == 429:
                    answer = refusal(deciding, self.options)
            await self.refuse(scope, receive, send, answer)


class _HeaderWriter:
    """The ``send`` the app gets: writes one set of rate-limit headers on the response start.

    One slotted object per request rather than a closure (and its cells), since it
    lives as long as the request.
    """

    __slots__ = ("send", "request_scope", "options", "managed", "started")

    def __init__(
        self, send: Send, request_scope: RequestScope, options: ResponseOptions, managed: frozenset[bytes]
    ) -> None:
        self.send, self.request_scope, self.options, self.managed = send, request_scope, options, managed
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            extra = decision_headers(self.request_scope.deciding(), self.options)
            if extra:
                managed = self.managed
                kept = [(n, v) for n, v in message.get("headers", ()) if n.lower() not in managed]
                message["headers"] = kept + _raw(extra)
        await self.send(message)
