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
``FORWARDED_HEADER``, ``PLAN_PROVIDER``, ``KEY_RESOLVER``, ``ENABLED``,
``APPLICATION_LIMITS``, ``IPV6_PREFIX``, ``PENALTY``, ``EXEMPT_WHEN``) and of
:data:`~limify.adapters.http.ADAPTER_SETTINGS` (``IDENTIFY``, ``HEADERS``,
``DRAFT_HEADERS``, ``HEADER_NAMES``, ``RETRY_AFTER``, ``REFUSED_VIEW``); hooks may
be given as dotted import paths. ``"ENABLED": False`` switches every limit off,
the ``@rate_limit`` views' included.

Both the middleware and :func:`limit_view` work in sync and async mode: sync
requests use the sync limiter, async ones the async limiter (Redis through
``redis.asyncio``), so no thread is blocked on Redis in an async stack.

Identity: the authenticated ``request.user``'s primary key (``await
request.auser()`` in async mode), then the ``IDENTIFY`` hook (``(request) ->
dict``, sync or async). The client IP is ``REMOTE_ADDR`` unless it is a trusted
proxy or hops are counted (``TRUSTED_HOPS``).

Refusals: a JSON 429 (or 503 while storage is down under ``fail_closed``), for
rules, ``limit_view`` and the ``RateLimitExceeded`` / ``StorageError`` of
``@rate_limit`` views (through ``process_exception``), instead of a 500 and a
logged traceback. ``REFUSED_VIEW``, as django-ratelimit's ``RATELIMIT_VIEW``, is
called ``(request, exception)`` for 429s (``exception.refusal`` says what Limify
would send) and returns the response; Limify's headers are added. A rule with
``block=False`` lets a refused request through with ``request.limited = True``
and the decision in ``request.limify_decision``. With the middleware installed,
each response carries one set of headers, for the most restrictive limit met.
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

from limify.adapters.headers import ResponseOptions, decision_headers
from limify.adapters.http import (
    Refusal,
    RequestLimitExceeded,
    build_context,
    exceeded_decision,
    limify_from_settings,
    options_from_settings,
    refusal,
    refusal_for_exception,
)
from limify.core.context import RequestContext
from limify.core.decision import Decision
from limify.core.limify import Limify
from limify.core.request_scope import RequestScope, opened
from limify.core.rules import LimifyConfig, Rule
from limify.errors import RateLimitExceeded

__all__ = ["LimifyMiddleware", "limit_view"]

_HOOKS = ("PLAN_PROVIDER", "KEY_RESOLVER", "EXEMPT_WHEN")


def _loaded(value: Any) -> Any:
    return import_string(value) if isinstance(value, str) else value


class _Setup:
    """What a request needs from ``settings.LIMIFY``."""

    def __init__(
        self,
        limify: Limify,
        identify: Callable[[HttpRequest], Any] | None,
        options: ResponseOptions,
        refused_view: Callable[[HttpRequest, Exception], Any] | None = None,
    ) -> None:
        self.limify = limify
        self.identify = identify
        self.options = options
        self.refused_view = refused_view

    @property
    def enabled(self) -> bool:
        return self.limify.enabled

    @classmethod
    def from_settings(cls, raw: Any) -> _Setup:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise TypeError(f"settings.LIMIFY must be a dict, got {raw!r}")
        raw = dict(raw)
        for hook in _HOOKS:
            if hook in raw:
                raw[hook] = _loaded(raw[hook])
        identify = _loaded(raw.get("IDENTIFY"))
        refused_view = _loaded(raw.get("REFUSED_VIEW"))
        if refused_view is not None and not callable(refused_view):
            raise TypeError(
                f"settings.LIMIFY REFUSED_VIEW must be a view (request, exception), got {refused_view!r}"
            )
        options = options_from_settings(raw, "settings.LIMIFY")
        return cls(limify_from_settings(raw, "settings.LIMIFY"), identify, options, refused_view)


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
        headers=forwarded,
        request=request,
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


def _with_headers(response: Any, decision: Decision | None, setup: _Setup) -> Any:
    if isinstance(response, HttpResponse) or hasattr(response, "headers"):
        for name, value in decision_headers(decision, setup.options):
            response[name] = value
    return response


def _annotate(request: HttpRequest, decision: Decision | None) -> None:
    """``request.limited``: whether any limit met so far refused it (as django-ratelimit sets it)."""
    refused = decision is not None and (decision.limited or decision.status == 503) and decision.status != 200
    request.limited = getattr(request, "limited", False) or refused
    if decision is not None and (decision.limited or decision.status == 503):
        request.limify_decision = decision


def _answer(request: HttpRequest, answer: Refusal, setup: _Setup) -> Any:
    """Limify's JSON refusal, or ``REFUSED_VIEW``'s response (a 429), with Limify's headers."""
    if answer.status == 429 and setup.refused_view is not None:
        exception = RequestLimitExceeded(answer.decision)
        exception.refusal = answer
        response = setup.refused_view(request, exception)
        if inspect.isawaitable(response):
            return _headed_later(response, answer)
        return _headed(response, answer)
    return _headed(HttpResponse(answer.body, status=answer.status, content_type="application/json"), answer)


def _headed(response: Any, answer: Refusal) -> Any:
    for name, value in answer.headers:
        if not response.has_header(name):
            response[name] = value
    return response


async def _headed_later(response: Any, answer: Refusal) -> Any:
    return _headed(await response, answer)


def _endpoint(request: HttpRequest) -> Callable[[], Any]:
    return lambda: getattr(getattr(request, "resolver_match", None), "func", None)


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
        scope = RequestScope(_endpoint(request), enabled=setup.enabled)
        request._limify_scope = scope
        with opened(scope):
            decision = setup.limify.sync_limiter.decide(_sync_context(request, setup))
            _annotate(request, decision)
            if decision.status != 200 and decision.blocks:
                return _answer(request, refusal(decision, setup.options), setup)
            return _with_headers(self.get_response(request), scope.deciding(), setup)

    async def _acall(self, request: HttpRequest) -> Any:
        setup = _current()
        scope = RequestScope(_endpoint(request), enabled=setup.enabled)
        request._limify_scope = scope
        with opened(scope):
            decision = await setup.limify.async_limiter.decide(await _async_context(request, setup))
            _annotate(request, decision)
            if decision.status != 200 and decision.blocks:
                answered = _answer(request, refusal(decision, setup.options), setup)
                return await answered if inspect.isawaitable(answered) else answered
            return _with_headers(await self.get_response(request), scope.deciding(), setup)

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        """Answer a ``@rate_limit`` view's ``RateLimitExceeded`` with a 429, ``StorageError`` with a 503."""
        setup = _current()
        answer = refusal_for_exception(exception, setup.options)
        if answer is None:
            return None
        scope: RequestScope | None = getattr(request, "_limify_scope", None)
        if isinstance(exception, RateLimitExceeded) and scope is not None:
            scope.add(exceeded_decision(exception))
            answer = refusal(scope.deciding() or answer.decision, setup.options)
        return _answer(request, answer, setup)


def limit_view(
    id: str, rate: Any = None, *, limify: Limify | None = None, **rule_options: Any
) -> Callable[[Any], Any]:
    """Limit one view (sync or async) with its own rule.

    Args:
        id: the rule's id (part of storage keys); views sharing an id share buckets.
        rate: ``"10/minute"``, ``"100 per day"``, a compound ``"10/second, 1000/day"`` ...
        limify: storage, plans and identity come from it; ``None``: from ``settings.LIMIFY``.
        **rule_options: ``method`` (only requests of these methods are limited),
            ``path``, ``algorithm``, ``cost``, ``key`` (``"ip"``, ``"user"``,
            ``"user_or_ip"``, ``"header:<name>"`` or a callable), ``block``,
            ``exempt_when``, ``penalty``, ``on_storage_error`` of the :class:`~limify.Rule`.
    """
    rule = Rule(id, rate=rate, **rule_options)
    if limify is not None:
        limify.adopt(rule)

    def setup_for() -> _Setup:
        setup = _current()
        if limify is None:
            setup.limify.adopt(rule)
            return setup
        return _Setup(limify, setup.identify, setup.options, setup.refused_view)

    def finish(request: HttpRequest, decision: Decision, setup: _Setup) -> Any:
        """The refusal to send, or ``None`` when the view runs."""
        _annotate(request, decision)
        if decision.status != 200 and decision.blocks:
            return _answer(request, refusal(decision, setup.options), setup)
        return None

    def headed(request: HttpRequest, response: Any, decision: Decision, setup: _Setup) -> Any:
        # Under the middleware, it writes the headers of everything the request met.
        return response if hasattr(request, "_limify_scope") else _with_headers(response, decision, setup)

    def decorate(view: Any) -> Any:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_limited(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                setup = setup_for()
                if not _current().enabled:
                    _annotate(request, None)
                    return await view(request, *args, **kwargs)
                decision = await setup.limify.async_limiter.decide(await _async_context(request, setup), rule)
                refused = finish(request, decision, setup)
                if refused is not None:
                    return await refused if inspect.isawaitable(refused) else refused
                return headed(request, await view(request, *args, **kwargs), decision, setup)

            return async_limited

        @functools.wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            setup = setup_for()
            if not _current().enabled:
                _annotate(request, None)
                return view(request, *args, **kwargs)
            decision = setup.limify.sync_limiter.decide(_sync_context(request, setup), rule)
            refused = finish(request, decision, setup)
            if refused is not None:
                return refused
            return headed(request, view(request, *args, **kwargs), decision, setup)

        return limited

    return decorate
