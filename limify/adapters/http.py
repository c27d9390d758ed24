"""What every framework adapter shares: headers, response bodies, identity fields, settings.

Headers
-------
Admitted and refused responses of limited requests carry::

    X-RateLimit-Limit: 10          the limit of the most restrictive plan
    X-RateLimit-Remaining: 3       what is left of it now
    X-RateLimit-Reset: 42          seconds until it is full again (rounded up)

and refused ones ``Retry-After`` (whole seconds, rounded up, at least 1). With
``draft_headers=True`` they also carry the IETF draft fields
(draft-ietf-httpapi-ratelimit-headers-10)::

    RateLimit-Policy: "items";q=10;w=60
    RateLimit: "items";r=3;t=42

A compound rule lists one policy per limit, named ``<rule>-<period>``. Requests
no rule limits, and requests admitted because storage failed open, carry none.

Storage down
------------
A request refused because its storage is unreachable under ``fail_closed`` (a
rule's, or the ``StorageError`` a ``@rate_limit`` endpoint raised) is a 503 with
``Retry-After:`` :data:`STORAGE_RETRY_AFTER` and no ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from limify.core.client_ip import resolve_client_ip
from limify.core.context import RequestContext
from limify.core.keys import encode_part, period_tag
from limify.core.limify import Limify
from limify.core.limiter import Decision
from limify.core.plan import Plan
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig
from limify.errors import RateLimitExceeded

__all__ = [
    "rate_limit_headers",
    "exceeded_headers",
    "retry_after_seconds",
    "TOO_MANY_REQUESTS",
    "UNAVAILABLE",
    "STORAGE_RETRY_AFTER",
    "unavailable_headers",
    "error_body",
    "IDENTITY_FIELDS",
    "build_context",
    "limify_from_settings",
    "SETTINGS",
]

TOO_MANY_REQUESTS = "Too Many Requests"
UNAVAILABLE = "Rate limit storage unavailable"
#: ``Retry-After`` (seconds) of a 503 for unreachable storage: the failure policy's
#: first backoff, after which the next request probes the storage again.
STORAGE_RETRY_AFTER = 1
#: The context fields adapters copy from the framework's per-request state.
IDENTITY_FIELDS = ("user_id", "org_id", "api_key")


def _ceil(seconds: float) -> int:
    # Rounded up so a client that waits the advertised time is admitted.
    return max(0, math.ceil(seconds - 1e-9))


def retry_after_seconds(result: LimitationResult) -> int:
    """``Retry-After`` for a refused result: whole seconds, rounded up, at least 1."""
    return max(1, _ceil(result.retry_after))


def _policy_name(rule_id: str, plans: tuple[Plan, ...], plan: Plan) -> str:
    name = encode_part(rule_id)
    return name if len(plans) == 1 else f"{name}-{period_tag(plan.period_us)}"


def _draft_headers(decision: Decision) -> list[tuple[str, str]]:
    assert decision.rule is not None
    plans, result = decision.plans, decision.result
    policies = ", ".join(
        f'"{_policy_name(decision.rule.id, plans, plan)}";q={plan.limit};w={_ceil(plan.period_seconds)}'
        for plan in plans
    )
    # The result is the most restrictive limit's; name the first plan with its limit.
    deciding = next((plan for plan in plans if plan.limit == result.limit), plans[0])
    name = _policy_name(decision.rule.id, plans, deciding)
    return [
        ("RateLimit-Policy", policies),
        ("RateLimit", f'"{name}";r={result.remaining};t={_ceil(result.reset_after)}'),
    ]


def unavailable_headers() -> list[tuple[str, str]]:
    """Headers for a 503 answering unreachable storage (see module docs)."""
    return [("Retry-After", str(STORAGE_RETRY_AFTER))]


def rate_limit_headers(
    decision: Decision, *, headers: bool = True, draft_headers: bool = False
) -> list[tuple[str, str]]:
    """The headers to add to the response of a decided request (see module docs)."""
    if decision.status == 503:
        return unavailable_headers()
    if not decision.limited:
        return []
    result = decision.result
    found: list[tuple[str, str]] = []
    if not result.allowed:
        found.append(("Retry-After", str(retry_after_seconds(result))))
    if headers:
        found += [
            ("X-RateLimit-Limit", str(result.limit)),
            ("X-RateLimit-Remaining", str(result.remaining)),
            ("X-RateLimit-Reset", str(_ceil(result.reset_after))),
        ]
    if draft_headers:
        found += _draft_headers(decision)
    return found


def exceeded_headers(exc: RateLimitExceeded) -> list[tuple[str, str]]:
    """Headers for a 429 answering a ``RateLimitExceeded`` raised by ``@rate_limit``."""
    result = exc.result
    return [
        ("Retry-After", str(retry_after_seconds(result))),
        ("X-RateLimit-Limit", str(result.limit)),
        ("X-RateLimit-Remaining", str(result.remaining)),
        ("X-RateLimit-Reset", str(_ceil(result.reset_after))),
    ]


def error_body(status: int, result: LimitationResult | None = None) -> bytes:
    """The JSON body of a 429 (with ``retry_after``) or a 503."""
    if status == 429 and result is not None:
        return json.dumps({"detail": TOO_MANY_REQUESTS, "retry_after": retry_after_seconds(result)}).encode()
    return json.dumps({"detail": UNAVAILABLE if status == 503 else TOO_MANY_REQUESTS}).encode()


def build_context(
    config: LimifyConfig,
    *,
    method: str,
    path: str,
    peer: str | None,
    forwarded: Callable[[str], Iterable[str]],
    fields: Mapping[str, Any],
) -> RequestContext:
    """A context from what every framework knows about a request.

    Args:
        peer: the socket peer's address.
        forwarded: ``header name -> its values`` (only the configured one is asked for).
        fields: identity fields (and extras) the application supplied.
    """
    header = config.forwarded_header
    values = forwarded(header) if config.trusted_proxies or config.trusted_hops else ()
    client_ip = resolve_client_ip(
        peer, values, trusted_proxies=config.trusted_proxies, trusted_hops=config.trusted_hops, header=header
    )
    extra = {name: value for name, value in fields.items() if value is not None}
    extra.setdefault("client_ip", client_ip)
    return RequestContext(method, path, **extra)


#: Setting names read by :func:`limify_from_settings` (``LIMIFY_<NAME>`` in Flask).
SETTINGS = (
    "RULES", "DEFAULT_RULE", "TRUSTED_PROXIES", "TRUSTED_HOPS", "FORWARDED_HEADER", "STORAGE",
    "ALGORITHM", "PLAN_PROVIDER", "KEY_RESOLVER",
)  # fmt: skip


def limify_from_settings(settings: Mapping[str, Any], where: str) -> Limify:
    """A :class:`Limify` from a framework's settings (names in :data:`SETTINGS`)."""
    unknown = sorted(set(settings) - set(SETTINGS) - {"IDENTIFY", "HEADERS", "DRAFT_HEADERS"})
    if unknown:
        raise ValueError(f"{where}: unknown settings {unknown}; expected some of {list(SETTINGS)}")
    config = LimifyConfig(
        settings.get("RULES", ()),
        settings.get("DEFAULT_RULE"),
        trusted_proxies=settings.get("TRUSTED_PROXIES", ()),
        forwarded_header=settings.get("FORWARDED_HEADER", "x-forwarded-for"),
        trusted_hops=settings.get("TRUSTED_HOPS", 0),
    )
    return Limify(
        settings.get("ALGORITHM", "token_bucket"),
        config,
        plan_provider=settings.get("PLAN_PROVIDER"),
        key_resolver=settings.get("KEY_RESOLVER"),
        storage=settings.get("STORAGE"),
    )
