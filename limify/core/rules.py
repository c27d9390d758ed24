"""Rules: which requests a limit applies to, at what rate, and what to do when storage fails.

A :class:`Rule` matches requests by HTTP method and path pattern. Path patterns
are matched segment by segment, ignoring empty segments (``/items/``,
``//items`` and ``/items`` are the same path, so a trailing slash cannot dodge a
rule):

* a literal segment matches itself (case-sensitive);
* ``*`` or ``{name}`` matches exactly one segment;
* ``**``, as the last segment only, matches any remaining segments, none included
  (``/api/**`` matches ``/api``, ``/api/a`` and ``/api/a/b``).

:class:`LimifyConfig` holds the rules. The rule with the highest ``priority``
among those matching a request applies; among equal priorities the rule listed
first wins. Requests no rule matches fall to ``default_rule``, or are not limited
when there is none.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from limify.core.algorithms import algorithm_classes
from limify.core.algorithms.penalty import Penalty
from limify.core.client_ip import check_trusted_hops
from limify.core.plan import Plan
from limify.core.rate import RateSpec, parse_rates
from limify.core.resilience import check_policy
from limify.core.validation import check_reporting
from limify.core.rule_hooks import KeyFunction, check_hook, compile_key

__all__ = ["Rule", "LimifyConfig", "FORWARDED_HEADERS"]

#: Headers a trusted proxy may report the client address in.
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded")
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP method is an RFC 9110 token
_ONE_SEGMENT = "*"
_REST = "**"


def _compile_path(rule_id: str, path: Any) -> tuple[tuple[str, ...], bool]:
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"rule {rule_id!r}: path must be a non-empty str like '/items/*', got {path!r}")
    if not path.startswith("/"):
        raise ValueError(f"rule {rule_id!r}: path {path!r} must start with '/'")
    segments = [segment for segment in path.split("/") if segment]
    rest = bool(segments) and segments[-1] == _REST
    if rest:
        segments.pop()
    compiled = []
    for segment in segments:
        if segment == _REST:
            raise ValueError(f"rule {rule_id!r}: '**' may only end the path, got {path!r}")
        if segment.startswith("{") and segment.endswith("}") and len(segment) > 2:
            segment = _ONE_SEGMENT
        elif segment != _ONE_SEGMENT and ("*" in segment or "{" in segment or "}" in segment):
            raise ValueError(
                f"rule {rule_id!r}: wildcards must be whole segments ('*', '{{name}}' or a final '**'), "
                f"got {path!r}"
            )
        compiled.append(segment)
    return tuple(compiled), rest


def _compile_methods(rule_id: str, method: Any) -> frozenset[str] | None:
    methods = [method] if isinstance(method, str) else method
    if not isinstance(methods, Iterable) or isinstance(methods, (bytes, Mapping)):
        raise TypeError(
            f"rule {rule_id!r}: method must be an HTTP method, '*' or a list of them, got {method!r}"
        )
    names = list(methods)
    if not names:
        raise ValueError(f"rule {rule_id!r}: method list is empty")
    for name in names:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"rule {rule_id!r}: {name!r} is not an HTTP method (or '*')")
    if "*" in names:
        return None
    methods = {name.upper() for name in names}
    if "GET" in methods:
        # Starlette, Flask and Django answer HEAD with the GET handler: a GET rule
        # that let HEAD through would leave that handler unlimited.
        methods.add("HEAD")
    return frozenset(methods)


@dataclass(frozen=True)
class Rule:
    """One limit on the requests matching ``method`` and ``path``.

    Args:
        id: the rule's name; part of storage keys, unique within a config.
        method: an HTTP method, ``"*"`` for any, or a list of methods. A rule
            naming ``GET`` also matches ``HEAD`` (frameworks run the GET handler
            for it, and both count in one bucket); one naming only ``HEAD``
            matches only ``HEAD``.
        path: a path pattern (see the module docs); ``"/**"`` matches every path.
        rate: ``"10/minute"``, a compound ``"10/second;1000/day"`` (all limits must
            admit a request, which then counts against all of them), plans, or a
            list mixing them with :class:`~limify.GlobalLimit` (one bucket shared
            by every identity under the rule).
        priority: among matching rules the highest applies.
        algorithm: an algorithm name; ``None`` uses the :class:`~limify.Limify`'s.
        cost: what one request spends.
        on_storage_error: when the storage is unreachable, ``"fail_open"`` (admit,
            unlimited), ``"fail_closed"`` (refuse; adapters answer 503) or
            ``"local"`` (count in process meanwhile); ``None`` follows
            :func:`limify.configure` (``"fail_closed"`` initially).
        shadow: ``True``: decide and report as if enforced, but let every request
            through, with no 429 and no rate-limit headers; ``None`` follows
            :func:`limify.configure`.
        on_breach: ``(event) -> None``, called once per refused request with its
            :class:`limify.events.Decision`.
        key: who a request is counted as: ``"ip"``, ``"user"``, ``"user_or_ip"``,
            ``"header:<name>"`` or a callable ``(request) -> value``; ``None``: the
            default identity (see :mod:`limify.core.rule_hooks`).
        exempt: the requests the rule matches are limited by nothing (no rate then).
        exempt_when: ``(request) -> bool``; true: the request is limited by nothing.
        block: ``False`` lets a request over the limit through, the decision
            attached to it (``request.limited``), for views that degrade instead.
        penalty: a :class:`~limify.Penalty` (or ``{"after": ..., "block": ...}``):
            block an identity for a while after repeated refusals; replaces the
            config's own penalty for this rule.

    ``cost`` may also be a callable ``(request) -> int``. Every argument is
    validated here; errors name the rule.
    """

    id: str
    method: str | Sequence[str] = "*"
    path: str = "/**"
    rate: RateSpec | None = None
    priority: int = 0
    algorithm: str | None = None
    cost: int | Callable[[Any], int] = 1
    on_storage_error: str | None = None
    shadow: bool | None = None
    on_breach: Callable[[Any], object] | None = field(default=None, compare=False)
    key: str | Callable[[Any], Any] | None = None
    exempt: bool = False
    exempt_when: Callable[[Any], Any] | None = None
    block: bool = True
    penalty: Penalty | Mapping[str, Any] | None = None
    #: The rule's own plans, named ``default``; a plan provider may override the per-identity ones.
    plans: tuple[Plan, ...] = field(init=False, repr=False, compare=False)
    #: For each plan, whether it is a :class:`~limify.GlobalLimit` shared by every identity.
    shared: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    #: ``key=`` compiled: ``(context) -> identity | None``.
    identity_of: KeyFunction | None = field(init=False, repr=False, compare=False)
    _methods: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _segments: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _rest: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rule_id = self.id
        if not isinstance(rule_id, str) or not rule_id:
            raise ValueError(f"a rule's id must be a non-empty str, got {rule_id!r}")
        limits = self._limits(rule_id)
        plans = tuple(plan for plan, _ in limits)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise TypeError(f"rule {rule_id!r}: priority must be an int, got {self.priority!r}")
        if self.algorithm is not None:
            try:
                algorithm_classes(self.algorithm)[0].spec.check_plans(plans)
            except ValueError as exc:
                raise ValueError(f"rule {rule_id!r}: {exc}") from None
        cost, smallest = self.cost, min((plan.limit for plan in plans), default=1)
        if callable(cost):
            pass  # checked on each request, against the plans it runs under
        elif isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= smallest:
            raise ValueError(
                f"rule {rule_id!r}: cost must be an int from 1 to {smallest} or a callable (request) -> int, "
                f"got {cost!r}"
            )
        if self.on_storage_error is not None:
            try:
                check_policy(self.on_storage_error)
            except ValueError as exc:
                raise ValueError(f"rule {rule_id!r}: {exc}") from None
        try:
            check_reporting(self.shadow, self.on_breach)
        except TypeError as exc:
            raise TypeError(f"rule {rule_id!r}: {exc}") from None
        segments, rest = _compile_path(rule_id, self.path)
        self._check_request_options(rule_id)
        object.__setattr__(self, "identity_of", compile_key(rule_id, self.key))
        object.__setattr__(self, "plans", plans)
        object.__setattr__(self, "shared", tuple(shared for _, shared in limits))
        object.__setattr__(self, "_methods", _compile_methods(rule_id, self.method))
        object.__setattr__(self, "_segments", segments)
        object.__setattr__(self, "_rest", rest)

    def _limits(self, rule_id: str) -> list[tuple[Plan, bool]]:
        if self.exempt is not False and self.exempt is not True:
            raise TypeError(f"rule {rule_id!r}: exempt must be True or False, got {self.exempt!r}")
        if self.exempt:
            if self.rate is not None:
                raise ValueError(f"rule {rule_id!r}: an exempt rule limits nothing, so it takes no rate")
            return []
        if self.rate is None:
            raise ValueError(f"rule {rule_id!r}: needs a rate such as '10/minute' (or exempt=True)")
        try:
            return parse_rates(self.rate)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"rule {rule_id!r}: {exc}") from None

    def _check_request_options(self, rule_id: str) -> None:
        check_hook(rule_id, "exempt_when", self.exempt_when)
        if self.block is not True and self.block is not False:
            raise TypeError(f"rule {rule_id!r}: block must be True or False, got {self.block!r}")
        if self.penalty is not None:
            try:
                object.__setattr__(self, "penalty", Penalty.from_value(self.penalty))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"rule {rule_id!r}: {exc}") from None
            if self.exempt:
                raise ValueError(f"rule {rule_id!r}: an exempt rule refuses nothing, so it takes no penalty")

    @classmethod
    def from_value(cls, value: Rule | Mapping[str, Any]) -> Rule:
        """A rule from a :class:`Rule` or a dict of its arguments."""
        if isinstance(value, Rule):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"a rule must be a limify.Rule or a dict, got {value!r}")
        unknown = set(value) - {
            "id", "method", "path", "rate", "priority", "algorithm", "cost", "on_storage_error",
            "shadow", "on_breach", "key", "exempt", "exempt_when", "block", "penalty",
        }  # fmt: skip
        if unknown:
            raise ValueError(f"rule {value.get('id')!r}: unknown keys {sorted(unknown)}")
        if "id" not in value:
            raise ValueError(f"rule {dict(value)!r} has no 'id'")
        return cls(**value)

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request (``method`` upper-case)."""
        if self._methods is not None and method not in self._methods:
            return False
        wanted = self._segments
        if not wanted and self._rest:  # "/**": every path
            return True
        parts = [segment for segment in path.split("/") if segment]
        if len(parts) < len(wanted) or (len(parts) > len(wanted) and not self._rest):
            return False
        return all(
            pattern == _ONE_SEGMENT or pattern == part for pattern, part in zip(wanted, parts, strict=False)
        )


def _networks(trusted: Any) -> tuple[Network, ...]:
    if isinstance(trusted, str):
        trusted = [trusted]
    networks = []
    for cidr in trusted:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except (TypeError, ValueError):
            raise ValueError(f"trusted_proxies: {cidr!r} is not an IP address or CIDR network") from None
    return tuple(networks)


_MATCHES_KEPT = 1024  # (method, path) answers LimifyConfig.match remembers, then forgets at once
_UNMATCHED: Any = object()


class LimifyConfig:
    """The rules of an application, plus how to find the client's address.

    Args:
        rules: :class:`Rule` objects or dicts of their arguments.
        default_rule: the rule for requests no rule matches (its method and path
            are not consulted); ``None``: such requests are not limited.
        trusted_proxies: addresses or CIDR networks of your reverse proxies. The
            client address is the socket peer unless the peer is one of these;
            then ``forwarded_header`` is read from the right, skipping trusted
            hops, and the first untrusted address is the client. A client whose
            own address is in these networks can name any identity.
        trusted_hops: instead of ``trusted_proxies``, how many reverse proxies
            stand in front of the app, each appending to ``forwarded_header``:
            the client is the ``trusted_hops``-th entry from the right (the
            socket peer is the nearest proxy and is not counted); a header with
            fewer entries falls back to the peer. ``0``: no proxy, the peer.
            See :mod:`limify.core.client_ip`.
        forwarded_header: ``"x-forwarded-for"`` or ``"forwarded"`` (RFC 7239):
            the one header your proxies set. The other is never read.
        application_limits: a rate (``"1000/hour"``, compound, ``GlobalLimit`` ...)
            counted for every request that is not exempt, per identity across all
            routes, on top of its rule's limits in one all-or-nothing check (or
            alone when no rule matches). It runs under the rule's algorithm and cost.
        ipv6_prefix: IPv6 clients are counted by their ``/ipv6_prefix`` network
            (64: one bucket per /64, what one subscriber usually gets); 128 counts
            each address alone.
        penalty: a :class:`~limify.Penalty` for every rule (one per identity across
            routes); a rule's own ``penalty`` replaces it.
        exempt_when: ``(request) -> bool``; true: the request is limited by nothing.

    Raises:
        ValueError: a bad rule (named), two rules with one id, a bad CIDR, a
            negative ``trusted_hops``, both ``trusted_proxies`` and ``trusted_hops``,
            a bad ``application_limits`` rate or one below a rule's cost, an
            ``ipv6_prefix`` outside 1..128.
        TypeError: ``trusted_hops`` or ``ipv6_prefix`` is not an int, a hook is not callable.
    """

    def __init__(
        self,
        rules: Iterable[Rule | Mapping[str, Any]] = (),
        default_rule: Rule | Mapping[str, Any] | None = None,
        *,
        trusted_proxies: Iterable[str] | str = (),
        forwarded_header: str = "x-forwarded-for",
        trusted_hops: int = 0,
        application_limits: RateSpec | None = None,
        ipv6_prefix: int = 64,
        penalty: Penalty | Mapping[str, Any] | None = None,
        exempt_when: Callable[[Any], Any] | None = None,
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(Rule.from_value(rule) for rule in rules)
        self.default_rule = None if default_rule is None else Rule.from_value(default_rule)
        seen: set[str] = set()
        for rule in (*self.rules, *([self.default_rule] if self.default_rule else [])):
            if rule.id in seen:
                raise ValueError(f"rule {rule.id!r}: two rules have this id; ids must be unique")
            seen.add(rule.id)
        if forwarded_header not in FORWARDED_HEADERS:
            raise ValueError(f"forwarded_header must be one of {FORWARDED_HEADERS}, got {forwarded_header!r}")
        self.trusted_proxies = _networks(trusted_proxies)
        self.trusted_hops = check_trusted_hops(trusted_hops)
        if self.trusted_proxies and self.trusted_hops:
            raise ValueError(
                f"trusted_proxies={trusted_proxies!r} and trusted_hops={trusted_hops!r} are two ways to "
                "find the client behind proxies; give one of them"
            )
        self.forwarded_header = forwarded_header
        self._request_options(application_limits, ipv6_prefix, penalty, exempt_when)
        # Stable sort: equal priorities keep their listed order.
        self._ordered = sorted(self.rules, key=lambda rule: -rule.priority)
        self._matches: dict[tuple[str, str], Rule | None] = {}

    def _request_options(self, application: Any, ipv6_prefix: Any, penalty: Any, exempt_when: Any) -> None:
        limits: list[tuple[Plan, bool]] = []
        if application is not None:
            try:
                limits = parse_rates(application)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"application_limits: {exc}") from None
        #: The application-wide limits, named ``default``, and which are shared by every identity.
        self.application_plans = tuple(plan for plan, _ in limits)
        self.application_shared = tuple(shared for _, shared in limits)
        if limits:
            smallest = min(plan.limit for plan in self.application_plans)
            for rule in (*self.rules, *([self.default_rule] if self.default_rule else [])):
                if isinstance(rule.cost, int) and rule.cost > smallest:
                    raise ValueError(
                        f"rule {rule.id!r}: cost {rule.cost} is above the application limit of {smallest}, "
                        "so no request of it could ever be admitted"
                    )
        if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int):
            raise TypeError(f"ipv6_prefix must be an int from 1 to 128, got {ipv6_prefix!r}")
        if not 1 <= ipv6_prefix <= 128:
            raise ValueError(
                f"ipv6_prefix must be from 1 to 128 (128: each address alone), got {ipv6_prefix!r}"
            )
        self.ipv6_prefix = ipv6_prefix
        self.penalty = None if penalty is None else Penalty.from_value(penalty)
        if exempt_when is not None and not callable(exempt_when):
            raise TypeError(f"exempt_when must be a callable (request) -> bool, got {exempt_when!r}")
        self.exempt_when = exempt_when
        #: Whether rule hooks need the framework's request object (adapters attach it then).
        self.needs_request = exempt_when is not None or any(
            callable(rule.key) or callable(rule.cost) or rule.exempt_when is not None
            for rule in (*self.rules, *([self.default_rule] if self.default_rule else []))
        )

    def match(self, method: str, path: str) -> Rule | None:
        """The rule applying to a request, or ``None``; remembered per (method, path), up to 1024."""
        key = (method, path)
        found: Rule | None = self._matches.get(key, _UNMATCHED)
        if found is _UNMATCHED:
            upper = method.upper()
            found = next((rule for rule in self._ordered if rule.matches(upper, path)), self.default_rule)
            if len(self._matches) >= _MATCHES_KEPT:
                self._matches.clear()
            self._matches[key] = found
        return found

    def __repr__(self) -> str:
        return f"LimifyConfig(rules={list(self.rules)!r}, default_rule={self.default_rule!r})"
