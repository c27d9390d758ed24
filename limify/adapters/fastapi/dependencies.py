"""Per-route limits as FastAPI dependencies, and the 429 / 503 handlers for refusals raised in routes.

::

    app.add_middleware(LimifyMiddleware, limiter=limify)
    items_limit = RateLimit("items", "10/minute")          # the middleware's Limify

    @app.get("/items", dependencies=[Depends(items_limit)])
    async def items(): ...

    @app.get("/quota")
    async def quota(limit: Annotated[LimitationResult, Depends(items_limit)]):
        return {"remaining": limit.remaining}

The dependency's :class:`~limify.Limify` is ``limify=``, else the application's:
the :class:`~limify.adapters.fastapi.middleware.LimifyMiddleware`'s, else
``app.state.limify``; with none of them the request fails with an error saying
what to add. A refused request raises
:class:`~limify.adapters.http.RequestLimitExceeded` (a ``RateLimitExceeded``),
answered like every refusal (429, the headers, ``{"detail": ..., "retry_after":
...}``) by the middleware or by :func:`rate_limit_exceeded_handler`; storage down
under ``fail_closed`` raises :class:`~limify.adapters.http.RequestStorageUnavailable`
(a ``StorageError``, a 503). An app with neither the middleware nor the handler
could not answer them so: the dependency fails on its first request, naming what
to add. An admitted request's value is the :class:`~limify.LimitationResult`; its
response carries one set of headers, for the most restrictive limit the request
met. ``block=False`` returns a refused result instead of raising
(``request.state.limited`` tells).
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations of
# RateLimit.__call__ at run time, and string annotations on a callable instance
# could not be resolved.

import weakref
from typing import Any, Optional, Union

from limify._extras import missing_extra

try:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
except ModuleNotFoundError as error:  # the extra is not installed
    raise missing_extra(__name__, "Starlette (FastAPI)", "fastapi", error) from error

from limify.adapters.headers import ResponseOptions, decision_headers
from limify.adapters.http import (
    RequestLimitExceeded,
    RequestStorageUnavailable,
    refusal_for_exception,
)
from limify.adapters.fastapi.middleware import (
    LIMIFY_KEY,
    SCOPE_KEY,
    Identify,
    annotate,
    async_limiter_of,
    context_from_scope,
)
from limify.core.limify import Limify
from limify.core.limiter import AsyncLimiter
from limify.core.request_scope import RequestScope, current
from limify.core.result import LimitationResult
from limify.core.rules import Rule
from limify.errors import LimifyError, RateLimitExceeded, StorageError

__all__ = ["RateLimit", "rate_limit_exceeded_handler", "storage_error_handler", "MISSING_SETUP"]

#: Why a dependency refuses to run in an app that could not answer its refusals.
MISSING_SETUP = (
    "nothing in this app answers Limify's refusals, so a refused request would be a 500: add "
    "app.add_middleware(LimifyMiddleware, limiter=limify) (which also sets the rate-limit headers), or "
    "app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler) and "
    "app.add_exception_handler(StorageError, storage_error_handler)"
)


def _handles(app: Any, error: type) -> bool:
    handlers = getattr(app, "exception_handlers", None) or {}
    return any(cls in handlers for cls in error.__mro__ if cls is not object and cls is not BaseException)


class RateLimit:
    """A FastAPI dependency enforcing one rule on the routes that depend on it.

    Args:
        id: the rule's id (part of storage keys). Routes sharing one
            ``RateLimit`` share its buckets.
        rate: ``"10/minute"``, ``"100 per day"``, a compound ``"10/second, 1000/day"`` ...
        limify: where storage, plans and identity resolution come from; ``None``:
            the application's (see the module docs).
        identify: ``(request) -> dict of context fields`` (or an awaitable).
        headers: as for :class:`~limify.adapters.fastapi.middleware.LimifyMiddleware`,
            used when no middleware writes the headers (so are the next three).
        draft_headers: as for the middleware.
        header_names: as for the middleware.
        retry_after: as for the middleware.
        **rule_options: ``method``, ``path``, ``algorithm``, ``cost``, ``key``,
            ``on_storage_error``, ``exempt_when``, ``block``, ``penalty`` of the
            :class:`~limify.Rule` (a ``method`` or ``path`` limits the requests it applies to).
    """

    def __init__(
        self,
        id: str,
        rate: Any,
        *,
        limify: Union[Limify, AsyncLimiter, None] = None,
        identify: Optional[Identify] = None,
        headers: bool = True,
        draft_headers: bool = False,
        header_names: Any = None,
        retry_after: str = "delta-seconds",
        **rule_options: Any,
    ) -> None:
        self.rule = Rule(id, rate=rate, **rule_options)
        self.limiter = None if limify is None else async_limiter_of(limify)
        if isinstance(limify, Limify):
            limify.adopt(self.rule)
        self.identify = identify
        self.options = ResponseOptions(headers, draft_headers, header_names, retry_after)
        self._managed = frozenset(name.encode("latin-1") for name in self.options.managed)
        #: Apps seen to answer Limify's refusals (their handlers are checked once).
        self._answering: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def _answered_by(self, app: Any) -> bool:
        """Whether ``app`` has handlers for Limify's refusals (remembered once seen)."""
        try:
            if app in self._answering:
                return True
        except TypeError:  # an app that cannot be weakly referenced: check every time
            return _handles(app, RequestLimitExceeded) and _handles(app, RequestStorageUnavailable)
        if _handles(app, RequestLimitExceeded) and _handles(app, RequestStorageUnavailable):
            self._answering.add(app)
            return True
        return False

    def _limiter(self, request: Request) -> AsyncLimiter:
        if self.limiter is not None:
            return self.limiter
        middleware = request.scope.get(LIMIFY_KEY)
        found: Any = getattr(middleware, "limify", None) or getattr(middleware, "limiter", None)
        if found is None:
            found = getattr(getattr(request.app, "state", None), "limify", None)
        if found is None:
            raise RuntimeError(
                f"RateLimit({self.rule.id!r}) has no Limify: pass limify=..., add "
                "app.add_middleware(LimifyMiddleware, limiter=limify), or set app.state.limify = limify"
            )
        if isinstance(found, Limify):
            found.adopt(self.rule)
        return async_limiter_of(found)

    async def __call__(self, request: Request, response: Response) -> LimitationResult:
        scope = request.scope
        with_middleware = scope.get(LIMIFY_KEY) is not None
        if not with_middleware and not self._answered_by(request.app):
            raise RuntimeError(f"RateLimit({self.rule.id!r}): {MISSING_SETUP}")
        limiter = self._limiter(request)
        request_scope: Optional[RequestScope] = scope.get(SCOPE_KEY)
        if request_scope is None:  # no middleware: a scope of the dependency's own, never made current
            request_scope = scope[SCOPE_KEY] = RequestScope()
        context = await context_from_scope(scope, limiter.config, self.identify, connection=request)
        decision = await limiter.decide(context, self.rule)
        if current() is not request_scope:  # without the middleware: the limiter could not record it
            request_scope.add(decision)
        annotate(scope, decision)
        if decision.status != 200 and decision.blocks:
            if decision.status == 503:
                raise RequestStorageUnavailable(decision)
            raise RequestLimitExceeded(decision)
        if not with_middleware:  # the middleware writes the headers of everything it collected
            _write_headers(response, decision_headers(request_scope.deciding(), self.options), self._managed)
        return decision.result

    def __repr__(self) -> str:
        return f"RateLimit({self.rule!r})"


def _write_headers(response: Response, headers: list[tuple[str, str]], managed: frozenset[bytes]) -> None:
    """Set ``headers`` on ``response``: appended raw when none of them is there yet (the common
    case), else one by one, so that a later dependency's replace an earlier one's."""
    raw = response.raw_headers
    if any(name in managed for name, _ in raw):
        for name, value in headers:
            response.headers[name] = value
    else:
        raw.extend((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers)


#: The options of a refusal rendered without the middleware (frozen: one instance serves all).
_DEFAULT_OPTIONS = ResponseOptions()


def _render(request: Request, exc: LimifyError) -> Response:
    middleware = request.scope.get(LIMIFY_KEY)
    options = getattr(middleware, "options", None) or _DEFAULT_OPTIONS
    request_scope = request.scope.get(SCOPE_KEY)
    if isinstance(exc, RateLimitExceeded) and request_scope is not None:
        from limify.adapters.http import exceeded_decision, refusal

        request_scope.add(exceeded_decision(exc))
        answer = refusal(request_scope.deciding() or exceeded_decision(exc), options)
    else:
        found = refusal_for_exception(exc, options)
        assert found is not None
        answer = found
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers),
                    media_type=JSONResponse.media_type)  # fmt: skip


async def rate_limit_exceeded_handler(request: Request, exc: Exception) -> Response:
    """Exception handler turning ``RateLimitExceeded`` into a 429 with ``Retry-After``.

    ``app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)``
    (also works on Starlette apps): for ``@rate_limit`` endpoints and ``RateLimit``
    dependencies alike, with the body and headers every adapter sends.
    """
    if not isinstance(exc, RateLimitExceeded):  # pragma: no cover - registered for that type only
        raise exc
    return _render(request, exc)


async def storage_error_handler(request: Request, exc: Exception) -> Response:
    """Exception handler turning ``StorageError`` into a 503 with ``Retry-After``.

    A ``@rate_limit`` endpoint whose storage is unreachable under ``fail_closed``
    raises ``StorageError``; ``app.add_exception_handler(StorageError,
    storage_error_handler)`` answers it as the middleware answers a rule's (which
    it also does for endpoints below it), without a traceback per request.
    """
    if not isinstance(exc, StorageError):  # pragma: no cover - registered for that type only
        raise exc
    return _render(request, exc)
