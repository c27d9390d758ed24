"""Flask: an extension applying a :class:`~limify.Limify`'s rules to every request.

::

    limits = LimifyFlask()

    def create_app():
        app = Flask(__name__)
        app.config["LIMIFY_RULES"] = [{"id": "items", "method": "GET", "path": "/items", "rate": "10/minute"}]
        limits.init_app(app)
        return app

Without a ``Limify`` the extension builds one from ``app.config``: ``LIMIFY_RULES``,
``LIMIFY_DEFAULT_RULE``, ``LIMIFY_STORAGE``, ``LIMIFY_ALGORITHM``,
``LIMIFY_TRUSTED_PROXIES`` or ``LIMIFY_TRUSTED_HOPS``, ``LIMIFY_FORWARDED_HEADER``,
``LIMIFY_PLAN_PROVIDER``, ``LIMIFY_KEY_RESOLVER``. It uses the sync limiter.

Identity: ``g.user_id``, ``g.org_id`` and ``g.api_key`` (set by ``before_request``
hooks registered before ``init_app``), then the ``identify`` hook
(``(request) -> dict``). The client IP is ``REMOTE_ADDR`` unless it is a trusted
proxy or hops are counted (do not also use werkzeug's ``ProxyFix``, which rewrites
``REMOTE_ADDR``).
``RateLimitExceeded`` from ``@rate_limit`` views becomes a 429, and ``StorageError``
(their storage unreachable under ``fail_closed``) a 503 with ``Retry-After``, like a
rule's, instead of a 500 and a logged traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from limify._extras import missing_extra

try:
    from flask import Flask, Response, g, request
except ModuleNotFoundError as error:  # the extra is not installed
    raise missing_extra(__name__, "Flask", "flask", error) from error

from limify.adapters.http import (
    IDENTITY_FIELDS,
    build_context,
    error_body,
    exceeded_headers,
    limify_from_settings,
    rate_limit_headers,
    unavailable_headers,
)
from limify.core.limify import Limify
from limify.core.limiter import Decision, SyncLimiter
from limify.errors import RateLimitExceeded, StorageError

__all__ = ["LimifyFlask"]

_PREFIX = "LIMIFY_"


def _json(status: int, body: bytes, headers: list[tuple[str, str]]) -> Response:
    return Response(body, status=status, headers=headers, mimetype="application/json")


class _AppState:
    """What one app needs per request; kept in ``app.extensions["limify"]``."""

    def __init__(
        self,
        limiter: SyncLimiter,
        identify: Callable[[Any], Mapping[str, Any] | None] | None,
        headers: bool,
        draft_headers: bool,
    ) -> None:
        self.limiter = limiter
        self.identify = identify
        self.headers = headers
        self.draft_headers = draft_headers

    def decide(self) -> Decision:
        fields: dict[str, Any] = {name: g.get(name) for name in IDENTITY_FIELDS}
        if self.identify is not None:
            found = self.identify(request)
            if found is not None:
                fields.update(found)
        context = build_context(
            self.limiter.config,
            method=request.method,
            path=request.path,
            peer=request.environ.get("REMOTE_ADDR"),
            forwarded=request.headers.getlist,
            fields=fields,
        )
        return self.limiter.decide(context)


class LimifyFlask:
    """The Flask extension (``init_app`` pattern; one instance may serve several apps).

    Args:
        app: an app to initialise now, or ``None`` to call :meth:`init_app` later.
        limify: a :class:`~limify.Limify`, or ``None`` to build one from ``app.config``.
        identify: ``(request) -> dict of context fields``.
        headers: add the ``X-RateLimit-*`` headers.
        draft_headers: add the IETF draft ``RateLimit`` / ``RateLimit-Policy`` headers.
    """

    def __init__(
        self,
        app: Flask | None = None,
        limify: Limify | None = None,
        *,
        identify: Callable[[Any], Mapping[str, Any] | None] | None = None,
        headers: bool = True,
        draft_headers: bool = False,
    ) -> None:
        self.limify = limify
        self.identify = identify
        self.headers = headers
        self.draft_headers = draft_headers
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install the limits on ``app``."""
        limify = self.limify
        if limify is None:
            settings = {
                name[len(_PREFIX) :]: value
                for name, value in app.config.items()
                if name.startswith(_PREFIX) and name[len(_PREFIX) :] not in ("HEADERS", "DRAFT_HEADERS")
            }
            limify = limify_from_settings(settings, "Flask config LIMIFY_*")
        app.extensions["limify"] = _AppState(
            limify.sync_limiter, self.identify, self.headers, self.draft_headers
        )
        app.before_request(_before_request)
        app.after_request(_after_request)
        app.register_error_handler(RateLimitExceeded, _rate_limit_exceeded)
        app.register_error_handler(StorageError, _storage_unavailable)


def _state() -> _AppState:
    from flask import current_app

    state: _AppState = current_app.extensions["limify"]
    return state


def _before_request() -> Response | None:
    state = _state()
    decision = state.decide()
    g._limify_decision = decision
    status = decision.status
    if status == 200:
        return None
    headers = rate_limit_headers(decision, headers=state.headers, draft_headers=state.draft_headers)
    return _json(status, error_body(status, decision.result), headers)


def _after_request(response: Response) -> Response:
    decision: Decision | None = g.get("_limify_decision")
    if decision is not None and decision.status == 200:
        state = _state()
        for name, value in rate_limit_headers(
            decision, headers=state.headers, draft_headers=state.draft_headers
        ):
            response.headers[name] = value
    return response


def _rate_limit_exceeded(exc: RateLimitExceeded) -> Response:
    return _json(429, error_body(429, exc.result), exceeded_headers(exc))


def _storage_unavailable(exc: StorageError) -> Response:
    # The failure policy already logged the outage once; no traceback per request.
    return _json(503, error_body(503), unavailable_headers())
