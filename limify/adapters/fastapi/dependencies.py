"""Per-route limits as FastAPI dependencies, and the 429 / 503 handlers for ``@rate_limit`` endpoints.

::

    items_limit = RateLimit("items", "10/minute", limify=limify)

    @app.get("/items", dependencies=[Depends(items_limit)])
    async def items(): ...

    @app.get("/quota")
    async def quota(limit: Annotated[LimitationResult, Depends(items_limit)]):
        return {"remaining": limit.remaining}

A refused request raises ``HTTPException(429)`` with the rate-limit headers
(``503`` with ``Retry-After`` when storage is down under
``on_storage_error="fail_closed"``); an
admitted one gets the headers on its response and the dependency's value is the
:class:`~limify.LimitationResult`.
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations of
# RateLimit.__call__ at run time, and string annotations on a callable instance
# could not be resolved.

from typing import Any, Union

from limify._extras import missing_extra

try:
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
except ModuleNotFoundError as error:  # the extra is not installed
    raise missing_extra(__name__, "Starlette (FastAPI)", "fastapi", error) from error

from limify.adapters.fastapi.middleware import Identify, async_limiter_of, context_from_scope
from limify.adapters.http import (
    UNAVAILABLE,
    error_body,
    exceeded_headers,
    rate_limit_headers,
    unavailable_headers,
)
from limify.core.limify import Limify
from limify.core.limiter import AsyncLimiter
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig, Rule
from limify.errors import RateLimitExceeded, StorageError

__all__ = ["RateLimit", "rate_limit_exceeded_handler", "storage_error_handler"]


class RateLimit:
    """A FastAPI dependency enforcing one rule on the routes that depend on it.

    Args:
        id: the rule's id (part of storage keys). Routes sharing one
            ``RateLimit`` share its buckets.
        rate: ``"10/minute"`` or a compound ``"10/second;1000/day"``.
        limify: where storage, plans and identity resolution come from; ``None``
            builds one on the process default storage (:func:`limify.configure`).
        identify: ``(request) -> dict of context fields`` (or an awaitable).
        headers, draft_headers: as for :class:`~limify.adapters.fastapi.middleware.LimifyMiddleware`.
        **rule_options: ``algorithm``, ``cost``, ``on_storage_error`` of the :class:`~limify.Rule`.
    """

    def __init__(
        self,
        id: str,
        rate: Any,
        *,
        limify: Union[Limify, AsyncLimiter, None] = None,
        identify: Identify | None = None,
        headers: bool = True,
        draft_headers: bool = False,
        **rule_options: Any,
    ) -> None:
        self.rule = Rule(id, rate=rate, **rule_options)
        self.limiter = async_limiter_of(limify if limify is not None else Limify(config=LimifyConfig()))
        self.identify = identify
        self.headers = headers
        self.draft_headers = draft_headers

    async def __call__(self, request: Request, response: Response) -> LimitationResult:
        context = await context_from_scope(request.scope, self.limiter.config, self.identify)
        decision = await self.limiter.decide(context, self.rule)
        extra = dict(rate_limit_headers(decision, headers=self.headers, draft_headers=self.draft_headers))
        if decision.status == 429:
            raise HTTPException(429, detail="Too Many Requests", headers=extra)
        if decision.status == 503:
            raise HTTPException(503, detail=UNAVAILABLE, headers=extra)
        response.headers.update(extra)
        return decision.result

    def __repr__(self) -> str:
        return f"RateLimit({self.rule!r})"


async def rate_limit_exceeded_handler(request: Request, exc: Exception) -> Response:
    """Exception handler turning ``RateLimitExceeded`` into a 429 with ``Retry-After``.

    ``app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)``
    (also works on Starlette apps).
    """
    if not isinstance(exc, RateLimitExceeded):  # pragma: no cover - registered for that type only
        raise exc
    return Response(
        error_body(429, exc.result),
        status_code=429,
        headers=dict(exceeded_headers(exc)),
        media_type=JSONResponse.media_type,
    )


async def storage_error_handler(request: Request, exc: Exception) -> Response:
    """Exception handler turning ``StorageError`` into a 503 with ``Retry-After``.

    A ``@rate_limit`` endpoint whose storage is unreachable under ``fail_closed``
    raises ``StorageError``; ``app.add_exception_handler(StorageError,
    storage_error_handler)`` answers it as the middleware answers a rule's (which
    it also does for endpoints below it), without a traceback per request.
    """
    if not isinstance(exc, StorageError):  # pragma: no cover - registered for that type only
        raise exc
    return Response(
        error_body(503),
        status_code=503,
        headers=dict(unavailable_headers()),
        media_type=JSONResponse.media_type,
    )
