"""Rate-limit response headers: which, under what names, and ``Retry-After`` as seconds or a date.

Admitted and refused responses of limited requests carry, for the most
restrictive limit the request met (see :mod:`limify.core.request_scope`)::

    X-RateLimit-Limit: 10          the limit of the most restrictive plan
    X-RateLimit-Remaining: 3       what is left of it now
    X-RateLimit-Reset: 42          seconds until it is full again (rounded up)

and refused ones ``Retry-After``: whole seconds, rounded up, at least 1
(``retry_after="http-date"``: the HTTP date it falls on). The names are
:data:`DEFAULT_HEADER_NAMES`, each replaceable (``header_names={"limit":
"RateLimit-Limit"}``). With ``draft_headers=True`` they also carry the IETF draft
fields (draft-ietf-httpapi-ratelimit-headers-10)::

    RateLimit-Policy: "items";q=10;w=60
    RateLimit: "items";r=3;t=42

listing one policy per limit met, named by its rule (``<rule>-<period>`` when a rule
has several limits; ``app`` for the application-wide ones). Requests no rule
limits, exempt ones, and requests admitted because storage failed open carry none.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from limify.core.decision import APPLICATION, Decision
from limify.core.keys import encode_part, period_tag
from limify.core.plan import Plan
from limify.core.result import LimitationResult

__all__ = [
    "ResponseOptions",
    "DEFAULT_HEADER_NAMES",
    "RETRY_AFTER_FORMATS",
    "STORAGE_RETRY_AFTER",
    "decision_headers",
    "retry_after_seconds",
    "ceil_seconds",
]

#: The headers Limify writes, by the key ``header_names`` replaces them under.
DEFAULT_HEADER_NAMES: Mapping[str, str] = {
    "limit": "X-RateLimit-Limit",
    "remaining": "X-RateLimit-Remaining",
    "reset": "X-RateLimit-Reset",
    "retry_after": "Retry-After",
}
#: ``Retry-After`` as whole seconds (RFC 9110 delta-seconds) or as the date it falls on.
RETRY_AFTER_FORMATS = ("delta-seconds", "http-date")
#: ``Retry-After`` (seconds) of a 503 for unreachable storage: the failure policy's
#: first backoff, after which the next request probes the storage again.
STORAGE_RETRY_AFTER = 1
_DRAFT = ("RateLimit-Policy", "RateLimit")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def ceil_seconds(seconds: float) -> int:
    """Seconds rounded up, so that a client that waits the advertised time is admitted."""
    return max(0, math.ceil(seconds - 1e-9))


def retry_after_seconds(result: LimitationResult) -> int:
    """``Retry-After`` for a refused result: whole seconds, rounded up, at least 1."""
    return max(1, ceil_seconds(result.retry_after))


@dataclass(frozen=True)
class ResponseOptions:
    """How an adapter writes rate-limit headers (see the module docs).

    Args:
        headers: write the ``X-RateLimit-*`` fields (``Retry-After`` on refusals stays).
        draft_headers: also write the IETF draft ``RateLimit`` / ``RateLimit-Policy``.
        header_names: replacements for :data:`DEFAULT_HEADER_NAMES`, by key.
        retry_after: ``"delta-seconds"`` (default) or ``"http-date"``.

    Raises:
        ValueError: an unknown key, a name that is not an HTTP field name, or an
            unknown ``retry_after`` format.
        TypeError: a switch that is not a bool.
    """

    headers: bool = True
    draft_headers: bool = False
    header_names: Mapping[str, str] | None = None
    retry_after: str = "delta-seconds"
    names: Mapping[str, str] = field(init=False, repr=False, compare=False)
    #: Lower-case names of every header Limify may write: stripped from inner
    #: responses before one set is written (see the ASGI middleware).
    managed: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("headers", "draft_headers"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.retry_after not in RETRY_AFTER_FORMATS:
            raise ValueError(f"retry_after must be one of {RETRY_AFTER_FORMATS}, got {self.retry_after!r}")
        given = dict(self.header_names or {})
        unknown = sorted(set(given) - set(DEFAULT_HEADER_NAMES))
        if unknown:
            raise ValueError(
                f"header_names: unknown keys {unknown}; expected some of {list(DEFAULT_HEADER_NAMES)}"
            )
        for key, name in given.items():
            if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
                raise ValueError(f"header_names[{key!r}] must be an HTTP header name, got {name!r}")
        names = {**DEFAULT_HEADER_NAMES, **given}
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "managed", frozenset(n.lower() for n in (*names.values(), *_DRAFT)))

    @classmethod
    def of(cls, value: Any = None, **switches: Any) -> ResponseOptions:
        """``value`` if it is already options, else options from the keyword arguments."""
        return value if isinstance(value, ResponseOptions) else cls(**switches)

    def retry_after_value(self, seconds: int) -> str:
        """``Retry-After`` for a wait of ``seconds``, in the configured format."""
        if self.retry_after == "http-date":
            return email.utils.formatdate(time.time() + seconds, usegmt=True)
        return str(seconds)


def _policies(decision: Decision) -> list[tuple[str, Plan]]:
    plans = decision.plans
    scopes = decision.scopes or ((decision.rule.id if decision.rule is not None else "limit"),) * len(plans)
    counts: dict[str, int] = {}
    for scope in scopes:
        counts[scope] = counts.get(scope, 0) + 1
    named = []
    for scope, plan in zip(scopes, plans, strict=True):
        name = "app" if scope == APPLICATION else encode_part(scope)
        named.append((name if counts[scope] == 1 else f"{name}-{period_tag(plan.period_us)}", plan))
    return named


def _draft_headers(decision: Decision) -> list[tuple[str, str]]:
    named, result = _policies(decision), decision.result
    if not named:
        return []
    policies = ", ".join(
        f'"{name}";q={plan.limit};w={ceil_seconds(plan.period_seconds)}' for name, plan in named
    )
    # The result is the most restrictive limit's; name the first plan with its limit.
    deciding = next((name for name, plan in named if plan.limit == result.limit), named[0][0])
    return [
        ("RateLimit-Policy", policies),
        ("RateLimit", f'"{deciding}";r={result.remaining};t={ceil_seconds(result.reset_after)}'),
    ]


def decision_headers(decision: Decision | None, options: ResponseOptions) -> list[tuple[str, str]]:
    """The headers of a response to a decided request (see the module docs).

    A 503 (storage down under ``fail_closed``) carries ``Retry-After`` alone. A
    refusal annotated instead of answered (``Rule(block=False)``) carries the
    counts but no ``Retry-After``: its response is not a refusal.
    """
    names = options.names
    if decision is None:
        return []
    if decision.status == 503:
        return [(names["retry_after"], options.retry_after_value(STORAGE_RETRY_AFTER))]
    if not decision.limited:
        return []
    result = decision.result
    found: list[tuple[str, str]] = []
    if not result.allowed and decision.blocks:
        found.append((names["retry_after"], options.retry_after_value(retry_after_seconds(result))))
    if options.headers:
        found += [
            (names["limit"], str(result.limit)),
            (names["remaining"], str(result.remaining)),
            (names["reset"], str(ceil_seconds(result.reset_after))),
        ]
    if options.draft_headers:
        found += _draft_headers(decision)
    return found
