"""What every framework adapter shares: refusals, response bodies, identity fields, settings.

Headers are in :mod:`limify.adapters.headers`. A request meets one limit or
several (the config's rule with the application-wide limits, a ``RateLimit``
dependency or ``limit_view``, a ``@rate_limit`` endpoint); adapters collect their
decisions in a :class:`~limify.core.request_scope.RequestScope` and describe the
most restrictive one.

Refusals
--------
Every adapter answers a refusal the same way: status 429, the rate-limit
headers, ``Retry-After``, and the body :func:`error_body` writes::

    {"detail": "Too Many Requests", "retry_after": 20}

A request refused because its storage is unreachable under ``fail_closed`` (a
rule's, or the ``StorageError`` a ``@rate_limit`` endpoint raised) is a 503 with
``Retry-After:`` :data:`STORAGE_RETRY_AFTER`, no ``X-RateLimit-*`` headers, and
``{"detail": "Rate limit storage unavailable"}``. Each framework has a hook for a
response of your own (a :class:`Refusal` says what Limify would send): the ASGI
middleware's ``on_refused``, Flask's ``@app.errorhandler(429)``, Django's
``LIMIFY["REFUSED_VIEW"]``; Limify's headers are added to what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from limify.adapters.headers import (
    DEFAULT_HEADER_NAMES,
    STORAGE_RETRY_AFTER,
    ResponseOptions,
    decision_headers,
    retry_after_seconds,
)
from limify.core.client_ip import resolve_client_ip
from limify.core.context import RequestContext
from limify.core.decision import Decision
from limify.core.limify import Limify
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig
from limify.errors import RateLimitExceeded, StorageError

__all__ = [
    "rate_limit_headers",
    "exceeded_headers",
    "retry_after_seconds",
    "TOO_MANY_REQUESTS",
    "UNAVAILABLE",
    "STORAGE_RETRY_AFTER",
    "DEFAULT_HEADER_NAMES",
    "ResponseOptions",
    "Refusal",
    "RequestLimitExceeded",
    "RequestStorageUnavailable",
    "refusal",
    "refusal_for_exception",
    "unavailable_headers",
    "error_body",
    "IDENTITY_FIELDS",
    "build_context",
    "limify_from_settings",
    "options_from_settings",
    "SETTINGS",
    "ADAPTER_SETTINGS",
]

TOO_MANY_REQUESTS = "Too Many Requests"
UNAVAILABLE = "Rate limit storage unavailable"
#: The context fields adapters copy from the framework's per-request state.
IDENTITY_FIELDS = ("user_id", "org_id", "api_key")
_STORAGE_DOWN = LimitationResult(allowed=False, remaining=0, limit=0, reset_after=0.0, retry_after=0.0)


#: ``json.dumps`` of the 429 body up to its ``retry_after`` value, and of the bodies without one.
_REFUSED_BODY = json.dumps({"detail": TOO_MANY_REQUESTS, "retry_after": 0}).encode()[: -len(b"0}")]
_PLAIN_BODIES = {
    503: json.dumps({"detail": UNAVAILABLE}).encode(),
    429: json.dumps({"detail": TOO_MANY_REQUESTS}).encode(),
}


def error_body(status: int, result: LimitationResult | None = None) -> bytes:
    """The JSON body of a 429 (with ``retry_after``) or a 503."""
    if status == 429 and result is not None:
        return b"%s%d}" % (_REFUSED_BODY, retry_after_seconds(result))
    return _PLAIN_BODIES[503 if status == 503 else 429]


@dataclass(frozen=True)
class Refusal:
    """A refused request, as Limify would answer it: what custom refusal hooks receive.

    Attributes:
        status: 429 (over a limit) or 503 (storage down under ``fail_closed``).
        decision: the deciding :class:`~limify.core.decision.Decision`.
        headers: the headers Limify sends with it (added to a hook's response too).
        body: Limify's JSON body (:func:`error_body`).
    """

    status: int
    decision: Decision
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def result(self) -> LimitationResult:
        """The refused check's result (``limit``, ``remaining``, ``retry_after`` ...)."""
        return self.decision.result

    @property
    def retry_after(self) -> int:
        """Whole seconds until the request would be admitted (what ``Retry-After`` says)."""
        return STORAGE_RETRY_AFTER if self.status == 503 else retry_after_seconds(self.decision.result)


def refusal(decision: Decision, options: ResponseOptions) -> Refusal:
    """How Limify answers a refused ``decision`` (429 or 503)."""
    status = decision.status
    return Refusal(status, decision, decision_headers(decision, options), error_body(status, decision.result))


class RequestLimitExceeded(RateLimitExceeded):
    """A web rule refused the request: raised by the ``RateLimit`` dependency, rendered by the adapter."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.result, decision.keys[0] if decision.keys else "")
        self.decision = decision
        #: How Limify would answer it (set where a refusal hook receives the exception).
        self.refusal: Refusal | None = None

    def __reduce__(self) -> Any:
        return (type(self), (self.decision,))


class RequestStorageUnavailable(StorageError):
    """A web rule's storage is unreachable under ``fail_closed``: the adapter answers 503."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(str(decision.storage_error or decision.plan_error or UNAVAILABLE))
        self.decision = decision


def exceeded_decision(exc: RateLimitExceeded) -> Decision:
    """The decision of a ``RateLimitExceeded`` (a ``@rate_limit`` endpoint's, or a rule's)."""
    found = getattr(exc, "decision", None)
    return found if isinstance(found, Decision) else Decision(exc.result, keys=(exc.key,))


def refusal_for_exception(exc: Exception, options: ResponseOptions) -> Refusal | None:
    """The refusal answering a ``RateLimitExceeded`` (429) or ``StorageError`` (503); ``None`` for others."""
    if isinstance(exc, RateLimitExceeded):
        return refusal(exceeded_decision(exc), options)
    if isinstance(exc, StorageError):
        found = getattr(exc, "decision", None)
        decision = found if isinstance(found, Decision) else Decision(_STORAGE_DOWN, storage_error=exc)
        return refusal(decision, options)
    return None


def unavailable_headers(options: ResponseOptions | None = None) -> list[tuple[str, str]]:
    """Headers for a 503 answering unreachable storage (see module docs)."""
    options = options or ResponseOptions()
    return [(options.names["retry_after"], options.retry_after_value(STORAGE_RETRY_AFTER))]


def rate_limit_headers(
    decision: Decision, *, headers: bool = True, draft_headers: bool = False
) -> list[tuple[str, str]]:
    """The headers of a decided request with the default names (see :mod:`limify.adapters.headers`)."""
    return decision_headers(decision, ResponseOptions(headers, draft_headers))


def exceeded_headers(exc: RateLimitExceeded, options: ResponseOptions | None = None) -> list[tuple[str, str]]:
    """Headers for a 429 answering a ``RateLimitExceeded`` raised by ``@rate_limit``."""
    return decision_headers(exceeded_decision(exc), options or ResponseOptions())


def build_context(
    config: LimifyConfig,
    *,
    method: str,
    path: str,
    peer: str | None,
    forwarded: Callable[[str], Iterable[str]],
    fields: Mapping[str, Any],
    headers: Any = None,
    request: Any = None,
) -> RequestContext:
    """A context from what every framework knows about a request.

    Args:
        peer: the socket peer's address.
        forwarded: ``header name -> its values`` (only the configured one is asked for).
        fields: identity fields (and extras) the application supplied.
        headers: the request's headers, for ``key="header:<name>"`` (a mapping or a
            ``(lower-case name) -> values`` callable).
        request: the framework's request, which rule hooks receive.
    """
    header = config.forwarded_header
    values = forwarded(header) if config.trusted_proxies or config.trusted_hops else ()
    client_ip = resolve_client_ip(
        peer, values, trusted_proxies=config.trusted_proxies, trusted_hops=config.trusted_hops, header=header
    )
    extra = {name: value for name, value in fields.items() if value is not None}
    extra.setdefault("client_ip", client_ip)
    if headers is not None:
        extra.setdefault("headers", headers)
    if request is not None:
        extra.setdefault("request", request)
    return RequestContext(method, path, **extra)


#: Setting names read by :func:`limify_from_settings` (``LIMIFY_<NAME>`` in Flask).
SETTINGS = (
    "RULES", "DEFAULT_RULE", "TRUSTED_PROXIES", "TRUSTED_HOPS", "FORWARDED_HEADER", "STORAGE",
    "ALGORITHM", "PLAN_PROVIDER", "KEY_RESOLVER", "ENABLED", "APPLICATION_LIMITS", "IPV6_PREFIX",
    "PENALTY", "EXEMPT_WHEN",
)  # fmt: skip
#: Settings of the adapter itself (how it answers), read by :func:`options_from_settings`.
ADAPTER_SETTINGS = ("IDENTIFY", "HEADERS", "DRAFT_HEADERS", "HEADER_NAMES", "RETRY_AFTER", "REFUSED_VIEW")


def limify_from_settings(settings: Mapping[str, Any], where: str) -> Limify:
    """A :class:`Limify` from a framework's settings (names in :data:`SETTINGS`)."""
    unknown = sorted(set(settings) - set(SETTINGS) - set(ADAPTER_SETTINGS))
    if unknown:
        raise ValueError(
            f"{where}: unknown settings {unknown}; expected some of {list(SETTINGS) + list(ADAPTER_SETTINGS)}"
        )
    config = LimifyConfig(
        settings.get("RULES", ()),
        settings.get("DEFAULT_RULE"),
        trusted_proxies=settings.get("TRUSTED_PROXIES", ()),
        forwarded_header=settings.get("FORWARDED_HEADER", "x-forwarded-for"),
        trusted_hops=settings.get("TRUSTED_HOPS", 0),
        application_limits=settings.get("APPLICATION_LIMITS"),
        ipv6_prefix=settings.get("IPV6_PREFIX", 64),
        penalty=settings.get("PENALTY"),
        exempt_when=settings.get("EXEMPT_WHEN"),
    )
    return Limify(
        settings.get("ALGORITHM", "token_bucket"),
        config,
        plan_provider=settings.get("PLAN_PROVIDER"),
        key_resolver=settings.get("KEY_RESOLVER"),
        storage=settings.get("STORAGE"),
        enabled=enabled_setting(settings, where),
    )


def enabled_setting(settings: Mapping[str, Any], where: str) -> bool:
    """The ``ENABLED`` setting (``True`` when absent)."""
    enabled = settings.get("ENABLED", True)
    if not isinstance(enabled, bool):
        raise TypeError(f"{where}: ENABLED must be True or False, got {enabled!r}")
    return enabled


def options_from_settings(settings: Mapping[str, Any], where: str, **given: Any) -> ResponseOptions:
    """The response options of ``HEADERS``, ``DRAFT_HEADERS``, ``HEADER_NAMES``, ``RETRY_AFTER``.

    A keyword in ``given`` that is not ``None`` (the adapter's own argument) wins over the setting.
    """
    values = {
        "headers": settings.get("HEADERS", True),
        "draft_headers": settings.get("DRAFT_HEADERS", False),
        "header_names": settings.get("HEADER_NAMES"),
        "retry_after": settings.get("RETRY_AFTER", "delta-seconds"),
    }
    values.update({name: value for name, value in given.items() if value is not None})
    try:
        return ResponseOptions(**values)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
