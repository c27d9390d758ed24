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
``LIMIFY_PLAN_PROVIDER``, ``LIMIFY_KEY_RESOLVER``, ``LIMIFY_APPLICATION_LIMITS``,
``LIMIFY_IPV6_PREFIX``, ``LIMIFY_PENALTY``, ``LIMIFY_EXEMPT_WHEN``. It uses the sync
limiter. Whatever the ``Limify``, ``LIMIFY_ENABLED = False`` switches the app's
limits off (its ``@rate_limit`` views included), and ``LIMIFY_HEADERS``,
``LIMIFY_DRAFT_HEADERS``, ``LIMIFY_HEADER_NAMES`` and ``LIMIFY_RETRY_AFTER`` shape
the headers unless the extension was given them; any other ``LIMIFY_*`` name is
an error.

Identity: ``g.user_id``, ``g.org_id`` and ``g.api_key`` (set by ``before_request``
hooks registered before ``init_app``), then the ``identify`` hook
(``(request) -> dict``). The client IP is ``REMOTE_ADDR`` unless it is a trusted
proxy or hops are counted (do not also use werkzeug's ``ProxyFix``, which rewrites
``REMOTE_ADDR``).

Refusals are raised as :class:`TooManyRequests` (werkzeug's 429, carrying
Limify's JSON response and the :class:`~limify.adapters.http.Refusal`), so an
``@app.errorhandler(429)`` of yours answers them, rules' and ``@rate_limit``
views' alike; storage down under ``fail_closed`` is :class:`ServiceUnavailable`
(503). A rule with ``block=False`` lets a refused request through with
``g.limited = True`` and the decision in ``g.limify_decision``. Each response
carries one set of headers, for the most restrictive limit the request met.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from limify._extras import missing_extra

try:
    from flask import Flask, Response, current_app, g, request
    from werkzeug.exceptions import HTTPException
    from werkzeug.exceptions import ServiceUnavailable as _ServiceUnavailable
    from werkzeug.exceptions import TooManyRequests as _TooManyRequests
except ModuleNotFoundError as error:  # the extra is not installed
    raise missing_extra(__name__, "Flask", "flask", error) from error

from limify.adapters.headers import ResponseOptions, decision_headers
from limify.adapters.http import (
    IDENTITY_FIELDS,
    Refusal,
    build_context,
    enabled_setting,
    limify_from_settings,
    options_from_settings,
    refusal,
    refusal_for_exception,
)
from limify.core.decision import Decision
from limify.core.limify import Limify
from limify.core.limiter import SyncLimiter
from limify.core.request_scope import RequestScope, enter, leave
from limify.errors import RateLimitExceeded, StorageError

__all__ = ["LimifyFlask", "TooManyRequests", "ServiceUnavailable"]

_PREFIX = "LIMIFY_"
_RESPONSE_SETTINGS = ("HEADERS", "DRAFT_HEADERS", "HEADER_NAMES", "RETRY_AFTER", "ENABLED")


class _Refused:
    """What both refusal exceptions carry: Limify's answer, as a response and as a Refusal."""

    refusal: Refusal

    def _limify_response(self, answer: Refusal) -> Response:
        return Response(
            answer.body, status=answer.status, headers=answer.headers, mimetype="application/json"
        )


class TooManyRequests(_TooManyRequests, _Refused):
    """A 429 from Limify: ``@app.errorhandler(429)`` receives it (``.refusal``, ``.result``)."""

    def __init__(self, answer: Refusal) -> None:
        super().__init__(response=self._limify_response(answer))
        self.refusal = answer
        self.result = answer.result


class ServiceUnavailable(_ServiceUnavailable, _Refused):
    """A 503 from Limify (storage down under ``fail_closed``): ``@app.errorhandler(503)`` receives it."""

    def __init__(self, answer: Refusal) -> None:
        super().__init__(response=self._limify_response(answer))
        self.refusal = answer


def _raised(answer: Refusal) -> HTTPException:
    return TooManyRequests(answer) if answer.status == 429 else ServiceUnavailable(answer)


class _AppState:
    """What one app needs per request; kept in ``app.extensions["limify"]``."""

    def __init__(
        self,
        limiter: SyncLimiter,
        identify: Callable[[Any], Mapping[str, Any] | None] | None,
        options: ResponseOptions,
        enabled: bool,
    ) -> None:
        self.limiter = limiter
        self.identify = identify
        self.options = options
        self.enabled = enabled

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
            headers=request.headers.getlist,
            request=request._get_current_object(),  # type: ignore[attr-defined]
        )
        return self.limiter.decide(context)


class LimifyFlask:
    """The Flask extension (``init_app`` pattern; one instance may serve several apps).

    Args:
        app: an app to initialise now, or ``None`` to call :meth:`init_app` later.
        limify: a :class:`~limify.Limify`, or ``None`` to build one from ``app.config``.
        identify: ``(request) -> dict of context fields``.
        headers: add the ``X-RateLimit-*`` headers (``None``: ``LIMIFY_HEADERS``, else yes).
        draft_headers: add the IETF draft ``RateLimit`` / ``RateLimit-Policy`` headers
            (``None``: ``LIMIFY_DRAFT_HEADERS``, else no).
        header_names: as for the ASGI middleware (``None``: the ``LIMIFY_HEADER_NAMES`` setting).
        retry_after: as for the ASGI middleware (``None``: the ``LIMIFY_RETRY_AFTER`` setting).
    """

    def __init__(
        self,
        app: Flask | None = None,
        limify: Limify | None = None,
        *,
        identify: Callable[[Any], Mapping[str, Any] | None] | None = None,
        headers: bool | None = None,
        draft_headers: bool | None = None,
        header_names: Mapping[str, str] | None = None,
        retry_after: str | None = None,
    ) -> None:
        self.limify = limify
        self.identify = identify
        self._options = {
            "headers": headers, "draft_headers": draft_headers, "header_names": header_names,
            "retry_after": retry_after,
        }  # fmt: skip
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install the limits on ``app``.

        Raises:
            ValueError, TypeError: a bad or unknown ``LIMIFY_*`` setting, named.
        """
        settings = {
            name[len(_PREFIX) :]: value for name, value in app.config.items() if name.startswith(_PREFIX)
        }
        where = "Flask config LIMIFY_*"
        limify = self.limify
        if limify is None:
            limify = limify_from_settings(settings, where)
        else:
            unknown = sorted(set(settings) - set(_RESPONSE_SETTINGS))
            if unknown:
                raise ValueError(
                    f"{where}: {['LIMIFY_' + name for name in unknown]} configure a Limify, but this "
                    f"LimifyFlask was given one; set them on it, or drop limify= to build it from app.config"
                )
        options = options_from_settings(settings, where, **self._options)
        enabled = enabled_setting(settings, where) and limify.enabled
        app.extensions["limify"] = _AppState(limify.sync_limiter, self.identify, options, enabled)
        app.before_request(_before_request)
        app.after_request(_after_request)
        app.teardown_request(_teardown_request)
        app.register_error_handler(RateLimitExceeded, _rate_limit_exceeded)
        app.register_error_handler(StorageError, _storage_unavailable)


def _state() -> _AppState:
    state: _AppState = current_app.extensions["limify"]
    return state


def _endpoint() -> Any:
    return current_app.view_functions.get(request.endpoint or "")


def _before_request() -> None:
    state = _state()
    scope = RequestScope(_endpoint, enabled=state.enabled)
    g._limify_scope, g._limify_token = scope, enter(scope)
    decision = state.decide()
    g.limited = False
    if decision.limited or decision.status == 503:
        g.limited, g.limify_decision = decision.status != 200, decision
    if decision.status != 200 and decision.blocks:
        raise _raised(refusal(decision, state.options))


def _after_request(response: Response) -> Response:
    scope: RequestScope | None = g.get("_limify_scope")
    if scope is not None:
        for name, value in decision_headers(scope.deciding(), _state().options):
            response.headers[name] = value
    return response


def _teardown_request(error: BaseException | None) -> None:
    token = g.pop("_limify_token", None)
    if token is not None:
        leave(token)


def _rate_limit_exceeded(exc: RateLimitExceeded) -> Any:
    scope: RequestScope | None = g.get("_limify_scope")
    answer = refusal_for_exception(exc, _state().options)
    assert answer is not None
    if scope is not None:
        from limify.adapters.http import exceeded_decision

        scope.add(exceeded_decision(exc))
        answer = refusal(scope.deciding() or answer.decision, _state().options)
    # Through the app's own 429 handler, if it has one (errorhandler(429)).
    return current_app.handle_http_exception(TooManyRequests(answer))


def _storage_unavailable(exc: StorageError) -> Any:
    # The failure policy already logged the outage once; no traceback per request.
    answer = refusal_for_exception(exc, _state().options)
    assert answer is not None
    return current_app.handle_http_exception(ServiceUnavailable(answer))
