"""Django: a middleware applying the rules in ``settings.LIMIFY``, and a view decorator.

::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "limify.adapters.django.LimifyMiddleware"]
    LIMIFY = {
        "RULES": [{"id": "items", "method": "GET", "path": "/items", "rate": "10/minute"}],
        "STORAGE": "redis://localhost:6379/0",
    }

``LIMIFY`` takes the names of :data:`limify.adapters.http.SETTINGS` (``RULES``,
``DEFAULT_RULE``, ``STORAGE``, ``ALGORITHM``, ``TRUSTED_PROXIES``, ``TRUSTED_HOPS``,
``FORWARDED_HEADER``, ``PLAN_PROVIDER``, ``KEY_RESOLVER``) plus ``IDENTIFY``,
``HEADERS`` and ``DRAFT_HEADERS``; hooks may be given as dotted import paths.

Both the middleware and :func:`limit_view` work in sync and async mode: sync
requests use the sync limiter, async ones the async limiter (Redis through
``redis.asyncio``), so no thread is blocked on Redis in an async stack.

Identity: the authenticated ``request.user``'s primary key (``await
request.auser()`` in async mode), then the ``IDENTIFY`` hook (``(request) ->
dict``, sync or async). The client IP is ``REMOTE_ADDR`` unless it is a trusted
proxy or hops are counted (``TRUSTED_HOPS``).

The middleware also answers what ``@rate_limit`` views raise: ``RateLimitExceeded``
with a 429, ``StorageError`` (storage unreachable under ``fail_closed``) with a 503
and ``Retry-After``, like a rule's, instead of a 500 and a logged traceback.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from limify._extras import missing_extra

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings
    from django.core.signals import setting_changed
    from django.http import HttpRequest, HttpResponse
    from django.utils.module_loading import import_string
except ModuleNotFoundError as error:  # the extra is not installed
    raise missing_extra(__name__, "Django", "django", error) from error

from limify.adapters.http import (
    build_context,
    error_body,
    exceeded_headers,
    limify_from_settings,
    rate_limit_headers,
    unavailable_headers,
)
from limify.core.context import RequestContext
from limify.core.limify import Limify
from limify.core.limiter import Decision
from limify.core.rules import LimifyConfig, Rule
from limify.errors import RateLimitExceeded, StorageError

__all__ = ["LimifyMiddleware", "limit_view"]


def _loaded(value: Any) -> Any:
    return import_string(value) if isinstance(value, str) else value


class _Setup:
    """What a request needs from ``settings.LIMIFY``."""

    def __init__(
        self,
        limify: Limify,
        identify: Callable[[HttpRequest], Any] | None,
        headers: bool,
        draft_headers: bool,
    ) -> None:
        self.limify = limify
        self.identify = identify
        self.headers = headers
        self.draft_headers = draft_headers

    @classmethod
    def from_settings(cls, raw: Any) -> _Setup:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise TypeError(f"settings.LIMIFY must be a dict, got {raw!r}")
        raw = dict(raw)
        for hook in ("PLAN_PROVIDER", "KEY_RESOLVER"):
            if hook in raw:
                raw[hook] = _loaded(raw[hook])
        identify = _loaded(raw.pop("IDENTIFY", None))
        headers = bool(raw.pop("HEADERS", True))
        draft_headers = bool(raw.pop("DRAFT_HEADERS", False))
        return cls(limify_from_settings(raw, "settings.LIMIFY"), identify, headers, draft_headers)


_setup: _Setup | None = None


def _current() -> _Setup:
    global _setup
    if _setup is None:
        _setup = _Setup.from_settings(getattr(settings, "LIMIFY", None))
    return _setup


def _forget_setup(*, setting: str, **kwargs: Any) -> None:
    global _setup
    if setting == "LIMIFY":
        _setup = None


setting_changed.connect(_forget_setup)


def _user_id(user: Any) -> Any:
    return user.pk if user is not None and getattr(user, "is_authenticated", False) else None


def _context(request: HttpRequest, config: LimifyConfig, fields: dict[str, Any]) -> RequestContext:
    meta = request.META

    def forwarded(header: str) -> list[str]:
        value = meta.get("HTTP_" + header.upper().replace("-", "_"))
        return [value] if value else []

    return build_context(
        config,
        method=request.method or "GET",
        path=request.path,
        peer=meta.get("REMOTE_ADDR"),
        forwarded=forwarded,
        fields=fields,
    )


def _sync_context(request: HttpRequest, setup: _Setup) -> RequestContext:
    fields: dict[str, Any] = {"user_id": _user_id(getattr(request, "user", None))}
    if setup.identify is not None:
        fields.update(setup.identify(request) or {})
    return _context(request, setup.limify.config, fields)


async def _async_context(request: HttpRequest, setup: _Setup) -> RequestContext:
    auser = getattr(request, "auser", None)
    fields: dict[str, Any] = {"user_id": _user_id(await auser()) if auser is not None else None}
    if setup.identify is not None:
        found = setup.identify(request)
        if inspect.isawaitable(found):
            found = await found
        fields.update(found or {})
    return _context(request, setup.limify.config, fields)


def _refusal(decision: Decision, setup: _Setup) -> HttpResponse | None:
    status = decision.status
    if status == 200:
        return None
    response = HttpResponse(
        error_body(status, decision.result), status=status, content_type="application/json"
    )
    for name, value in rate_limit_headers(decision, headers=setup.headers, draft_headers=setup.draft_headers):
        response[name] = value
    return response


def _with_headers(response: HttpResponse, decision: Decision, setup: _Setup) -> HttpResponse:
    for name, value in rate_limit_headers(decision, headers=setup.headers, draft_headers=setup.draft_headers):
        response[name] = value
    return response


def _answer_for(exception: Exception) -> HttpResponse | None:
    """The 429 or 503 for an exception from a ``@rate_limit`` view, or ``None`` for others."""
    if isinstance(exception, RateLimitExceeded):
        status, body, headers = 429, error_body(429, exception.result), exceeded_headers(exception)
    elif isinstance(exception, StorageError):
        status, body, headers = 503, error_body(503), unavailable_headers()
    else:
        return None
    response = HttpResponse(body, status=status, content_type="application/json")
    for name, value in headers:
        response[name] = value
    return response


class LimifyMiddleware:
    """Apply ``settings.LIMIFY``'s rules to every request (sync or async stack)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        _current()  # bad settings fail at start-up, not on the first request

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        setup = _current()
        decision = setup.limify.sync_limiter.decide(_sync_context(request, setup))
        refusal = _refusal(decision, setup)
        if refusal is not None:
            return refusal
        return _with_headers(self.get_response(request), decision, setup)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        setup = _current()
        decision = await setup.limify.async_limiter.decide(await _async_context(request, setup))
        refusal = _refusal(decision, setup)
        if refusal is not None:
            return refusal
        return _with_headers(await self.get_response(request), decision, setup)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Answer a ``@rate_limit`` view's ``RateLimitExceeded`` with a 429, ``StorageError`` with a 503."""
        return _answer_for(exception)


def limit_view(
    id: str, rate: Any, *, limify: Limify | None = None, **rule_options: Any
) -> Callable[[Any], Any]:
    """Limit one view (sync or async) with its own rule.

    Args:
        id: the rule's id (part of storage keys); views sharing an id share buckets.
        rate: ``"10/minute"`` or a compound ``"10/second;1000/day"``.
        limify: storage, plans and identity come from it; ``None``: from ``settings.LIMIFY``.
        **rule_options: ``algorithm``, ``cost``, ``on_storage_error`` of the :class:`~limify.Rule`.
    """
    rule = Rule(id, rate=rate, **rule_options)

    def setup_for() -> _Setup:
        setup = _current()
        if limify is None:
            return setup
        return _Setup(limify, setup.identify, setup.headers, setup.draft_headers)

    def decorate(view: Any) -> Any:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_limited(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                setup = setup_for()
                context = await _async_context(request, setup)
                decision = await setup.limify.async_limiter.decide(context, rule)
                refusal = _refusal(decision, setup)
                if refusal is not None:
                    return refusal
                return _with_headers(await view(request, *args, **kwargs), decision, setup)

            return async_limited

        @functools.wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            setup = setup_for()
            decision = setup.limify.sync_limiter.decide(_sync_context(request, setup), rule)
            refusal = _refusal(decision, setup)
            if refusal is not None:
                return refusal
            return _with_headers(view(request, *args, **kwargs), decision, setup)

        return limited

    return decorate
