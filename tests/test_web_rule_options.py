"""Rule options through the limiter: exemptions, key shortcuts and callables, cost callables, IPv6
grouping, explicit rules' methods, the kill switch, each Limify's own memory, peek and reset."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import (
    InMemoryAdapter,
    Limify,
    LimifyConfig,
    ManualClock,
    PlanError,
    RateLimitExceeded,
    RequestContext,
    Rule,
    configure,
    get_default_storage,
    rate_limit,
)
from limify.core.decision import APPLICATION
from limify.core.request_check import grouped_ip


def limify_of(*rules: Rule, clock: ManualClock | None = None, **config: Any) -> Limify:
    """A Limify on a private in-memory store (fixed window: counts are exact)."""
    default_rule = config.pop("default_rule", None)
    store = InMemoryAdapter(clock=clock) if clock is not None else InMemoryAdapter()
    return Limify("fixed_window", LimifyConfig(list(rules), default_rule, **config), storage=store)


def status(limify: Limify, path: str = "/x", method: str = "GET", **fields: Any) -> int:
    decision = limify.sync_limiter.decide(RequestContext(method, path, **fields))
    return int(decision.status)


# --- exemptions ----------------------------------------------------------------------------------


def test_an_exempt_rule_escapes_the_default_rule_and_the_application_limits() -> None:
    """Rule("health", path="/health", exempt=True): never counted, never refused, no storage touched."""
    limify = limify_of(
        Rule("health", "GET", "/health", exempt=True),
        default_rule=Rule("all", rate="1/minute"),
        application_limits="1/minute",
    )
    decisions = [
        limify.sync_limiter.decide(RequestContext("GET", "/health", client_ip="192.0.2.1")) for _ in range(5)
    ]
    assert {(d.status, d.exempt, d.limited) for d in decisions} == {(200, True, False)}
    assert len(limify.memory) == 0 and len(limify.storage) == 0  # type: ignore[arg-type]
    assert [status(limify, "/other", client_ip="192.0.2.1") for _ in range(2)] == [200, 429]


def test_exempt_when_hooks_on_rules_and_on_the_config_receive_the_request() -> None:
    """A rule's exempt_when exempts what it answers true for; the config's exempts from every rule."""
    seen: list[Any] = []

    def staff(request: Any) -> bool:
        seen.append(request)
        return getattr(request, "user_id", None) == "admin"

    limify = limify_of(
        Rule("items", path="/items", rate="1/minute", exempt_when=staff),
        Rule("orders", path="/orders", rate="1/minute"),
        exempt_when=lambda request: getattr(request, "client_ip", None) == "10.0.0.1",
    )
    assert [status(limify, "/items", user_id="admin") for _ in range(3)] == [200, 200, 200]
    assert [status(limify, "/items", user_id="bob") for _ in range(2)] == [200, 429]
    assert [status(limify, "/orders", client_ip="10.0.0.1") for _ in range(3)] == [200, 200, 200]
    assert [status(limify, "/orders", client_ip="10.0.0.2") for _ in range(2)] == [200, 429]
    assert all(isinstance(request, RequestContext) for request in seen)  # no framework: the context
    framework_request = object()
    context = RequestContext("GET", "/items", user_id="carol", request=framework_request)
    limify.sync_limiter.decide(context)
    assert seen[-1] is framework_request  # through an adapter: the framework's request


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"rate": "1/s", "exempt": True}, ValueError, "an exempt rule limits nothing, so it takes no rate"),
        ({"exempt": "yes"}, TypeError, "exempt must be True or False"),
        ({"rate": "1/s", "exempt_when": "staff"}, TypeError, "exempt_when must be a callable"),
        ({"rate": "1/s", "block": "no"}, TypeError, "block must be True or False"),
        ({"rate": "1/s", "key": "session"}, ValueError, "unknown key 'session'"),
        ({"rate": "1/s", "key": "header:"}, ValueError, "'header:<name>'"),
        ({"rate": "1/s", "key": 42}, TypeError, "key must be a shortcut"),
        ({"rate": "1/s", "cost": "2"}, ValueError, "or a callable"),
        ({"rate": "1/s", "penalty": "5/minute"}, TypeError, "penalty must be a limify.Penalty"),
        ({"exempt": True, "penalty": {"after": "1/s", "block": 1}}, ValueError, "takes no penalty"),
        ({}, ValueError, "or exempt=True"),
    ],
)
def test_bad_rule_options_fail_when_the_rule_is_built(
    options: dict[str, Any], error: type, words: str
) -> None:
    """Each bad option is a ValueError or TypeError naming the rule and what was expected."""
    with pytest.raises(error, match=words):
        Rule("r", path="/r", **options)
    with pytest.raises(error, match="rule 'r'"):
        Rule.from_value({"id": "r", "path": "/r", **options})


# --- identities ----------------------------------------------------------------------------------


def test_key_shortcuts_pick_the_identity() -> None:
    """The shortcuts "ip", "user", "user_or_ip" and "header:<name>" count as django-ratelimit's keys do."""
    rules = [
        Rule("by-ip", path="/ip", rate="1/minute", key="ip"),
        Rule("by-user", path="/user", rate="1/minute", key="user"),
        Rule("by-either", path="/either", rate="1/minute", key="user_or_ip"),
        Rule("by-key", path="/key", rate="1/minute", key="header:X-API-Key"),
    ]
    limiter = limify_of(*rules).sync_limiter

    def keys(path: str, **fields: Any) -> tuple[str, ...]:
        return limiter.decide(RequestContext("GET", path, **fields)).keys  # type: ignore[no-any-return]

    assert keys("/ip", user_id=7, client_ip="192.0.2.9") == ("limify:by-ip:default:ip:192.0.2.9",)
    assert keys("/user", user_id=7, api_key="k", client_ip="192.0.2.9") == ("limify:by-user:default:user:7",)
    assert keys("/user", client_ip="192.0.2.9") == ("limify:by-user:default:anonymous:all",)
    assert keys("/either", client_ip="192.0.2.9") == ("limify:by-either:default:ip:192.0.2.9",)
    assert keys("/either", user_id=8, client_ip="192.0.2.9") == ("limify:by-either:default:user:8",)
    headers = {"x-api-key": "k-123"}
    assert keys("/key", headers=headers, client_ip="192.0.2.9") == (
        "limify:by-key:default:header%3Ax-api-key:k-123",
    )
    assert keys("/key", headers={}, client_ip="192.0.2.9") == ("limify:by-key:default:anonymous:all",)


def test_a_key_callable_receives_the_request_and_may_fall_back() -> None:
    """key=(request) -> value | (type, value) | None; None falls back to the default identity."""

    def tenant(request: Any) -> Any:
        found = request.header("x-tenant")
        return None if found is None else ("tenant", found) if found.startswith("t-") else found

    limiter = limify_of(Rule("t", path="/t", rate="1/minute", key=tenant)).sync_limiter

    def key(**headers: str) -> str:
        context = RequestContext("GET", "/t", client_ip="192.0.2.3", headers=headers)
        return limiter.decide(context).keys[0]  # type: ignore[no-any-return]

    assert key(**{"x-tenant": "t-acme"}) == "limify:t:default:tenant:t-acme"
    assert key(**{"x-tenant": "acme"}) == "limify:t:default:key:acme"
    assert key() == "limify:t:default:ip:192.0.2.3"
    bad = limify_of(Rule("b", path="/b", rate="1/minute", key=lambda request: (1, 2))).sync_limiter
    with pytest.raises(TypeError, match="key\\(\\) must return"):
        bad.decide(RequestContext("GET", "/b"))


def test_a_cost_callable_charges_each_request_its_own_cost() -> None:
    """cost=(request) -> int; a cost above the limit is a PlanError, answered by the failure policy."""

    def size(request: Any) -> Any:
        found = request.header("x-size")
        return int(found) if found.isdigit() else found

    rule = Rule("upload", path="/upload", rate="10/minute", cost=size)
    limify = limify_of(rule)

    def send(size: int) -> Any:
        context = RequestContext("POST", "/upload", client_ip="192.0.2.4", headers={"x-size": str(size)})
        return limify.sync_limiter.decide(context)

    assert [send(4).result.remaining for _ in range(2)] == [6, 2]
    assert send(4).status == 429 and send(2).status == 200
    too_big = send(11)
    assert too_big.status == 503 and isinstance(too_big.plan_error, PlanError)
    with pytest.raises(TypeError, match="the cost callable's result must be an int"):
        limify.sync_limiter.decide(RequestContext("POST", "/upload", headers={"x-size": "x"}))


_V6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))


@given(first=st.integers(0, 2**64 - 1), second=st.integers(0, 2**64 - 1), prefix=st.integers(0, 2**64 - 1))
def test_two_addresses_in_one_slash_64_share_a_key(first: int, second: int, prefix: int) -> None:
    """Any two addresses of one /64 are one bucket under the default ipv6_prefix=64."""
    a = str(ipaddress.IPv6Address((prefix << 64) | first))
    b = str(ipaddress.IPv6Address((prefix << 64) | second))
    limiter = limify_of(Rule("r", rate="1/minute")).sync_limiter
    keys = [limiter.decide(RequestContext("GET", "/", client_ip=ip)).keys for ip in (a, b)]
    assert keys[0] == keys[1]


@given(a=_V6, b=_V6, prefix=st.sampled_from([48, 56, 64, 96, 128]))
def test_different_prefixes_never_share_a_key(a: str, b: str, prefix: int) -> None:
    """Two addresses share a bucket exactly when their /ipv6_prefix networks are equal."""
    limiter = limify_of(Rule("r", rate="1/minute"), ipv6_prefix=prefix).sync_limiter
    keys = [limiter.decide(RequestContext("GET", "/", client_ip=ip)).keys for ip in (a, b)]
    same = ipaddress.ip_network(f"{a}/{prefix}", strict=False) == ipaddress.ip_network(
        f"{b}/{prefix}", strict=False
    )
    assert (keys[0] == keys[1]) == same


def test_ipv6_grouping_is_configurable_and_leaves_ipv4_alone() -> None:
    """One attacker's /64 is one bucket; ipv6_prefix=128 counts each address; IPv4 is never grouped."""
    limify = limify_of(Rule("r", rate="2/minute"))
    attacker = [f"2001:db8:1:2::{n:x}" for n in range(1, 5)]
    assert [status(limify, client_ip=ip) for ip in attacker] == [200, 200, 429, 429]
    assert status(limify, client_ip="2001:db8:1:3::1") == 200
    assert (
        grouped_ip("2001:db8:1:2::1", 64) == "2001:db8:1:2::/64"
        and grouped_ip("192.0.2.1", 64) == "192.0.2.1"
    )
    assert grouped_ip("2001:db8::1", 128) == "2001:db8::1"
    for bad, error in ((0, ValueError), (129, ValueError), ("64", TypeError), (True, TypeError)):
        with pytest.raises(error, match="ipv6_prefix"):
            LimifyConfig(ipv6_prefix=bad)


# --- explicit rules, kill switch, memory, peek and reset -----------------------------------------


def test_an_explicit_rule_limits_only_the_requests_its_method_and_path_match() -> None:
    """decide(context, rule) with method="POST": GET requests pass uncounted."""
    limify = limify_of()
    rule = Rule("submit", "POST", rate="1/minute")
    gets = [limify.sync_limiter.decide(RequestContext("GET", "/form"), rule) for _ in range(3)]
    assert {(d.status, d.limited) for d in gets} == {(200, False)}
    posts = [limify.sync_limiter.decide(RequestContext("POST", "/form"), rule).status for _ in range(2)]
    assert posts == [200, 429]


def test_the_kill_switch_admits_everything_uncounted() -> None:
    """configure(enabled=False): rules and @rate_limit admit without counting; enabled=True restores them."""
    limify = limify_of(Rule("r", rate="1/minute"))
    store = InMemoryAdapter()

    @rate_limit("1/minute", storage=store)
    def call() -> bool:
        return True

    @rate_limit("1/minute", storage=store, key="who")
    def keyed(who: str) -> bool:
        return True

    configure(enabled=False)
    try:
        assert [status(limify, client_ip="192.0.2.1") for _ in range(3)] == [200] * 3
        assert [call() for _ in range(3)] == [True] * 3 and [keyed("a") for _ in range(3)] == [True] * 3
        assert len(store) == 0 and len(limify.memory) == 0
    finally:
        configure(enabled=True)
    assert [status(limify, client_ip="192.0.2.1") for _ in range(2)] == [200, 429]
    call()
    with pytest.raises(RateLimitExceeded):
        call()
    with pytest.raises(TypeError, match="enabled must be True or False"):
        configure(enabled="no")  # type: ignore[arg-type]


def test_a_switched_off_limify_admits_everything() -> None:
    """Limify(enabled=False) decides every request UNLIMITED: no headers, no counts."""
    limify = Limify(config=LimifyConfig([Rule("r", rate="1/minute")]), enabled=False)
    decisions = [limify.sync_limiter.decide(RequestContext("GET", "/")) for _ in range(3)]
    assert {(d.status, d.limited) for d in decisions} == {(200, False)}


def test_each_limify_has_its_own_memory_unless_told_to_share() -> None:
    """Two Limify on "memory://" (or on the default) never share counts; "memory://<name>" does."""
    previous = get_default_storage()
    configure(storage="memory://")
    try:
        for storage in ("memory://", None):
            first, second = (
                Limify(config=LimifyConfig([Rule("r", rate="1/minute")]), storage=storage) for _ in "ab"
            )
            assert [status(first, client_ip="192.0.2.1") for _ in range(2)] == [200, 429]
            assert status(second, client_ip="192.0.2.1") == 200, storage
        shared = [
            Limify(config=LimifyConfig([Rule("r", rate="1/minute")]), storage="memory://team") for _ in "ab"
        ]
        assert status(shared[0], client_ip="192.0.2.1") == 200
        assert status(shared[1], client_ip="192.0.2.1") == 429
    finally:
        configure(storage=previous)


def test_peek_and_reset_web_rules() -> None:
    """limify.peek / reset by rule id and identity, for config, default and adopted rules and the application."""
    clock = ManualClock()
    limify = limify_of(
        Rule("items", path="/items", rate="2/minute"),
        default_rule=Rule("all", rate="5/minute"),
        application_limits="10/minute",
        clock=clock,
    )
    status(limify, "/items", user_id=1)
    assert limify.peek("items", ("user", 1)).remaining == 0
    assert limify.peek("all", RequestContext("GET", "/x", user_id=1)).remaining == 4
    assert limify.peek(APPLICATION, ("user", 1)).remaining == 8
    limify.reset("items", ("user", 1))
    assert limify.peek("items", ("user", 1)).remaining == 1
    assert limify.peek(APPLICATION, ("user", 1)).remaining == 8  # the application's count stays
    limify.reset(APPLICATION, ("user", 1))
    assert limify.peek(APPLICATION, ("user", 1)).remaining == 9
    own = limify.adopt(Rule("export", rate="1/minute"))
    limify.sync_limiter.decide(RequestContext("GET", "/e", user_id=1), own)
    assert limify.peek("export", ("user", 1)).allowed is False
    with pytest.raises(
        ValueError, match=r"no rule 'nope' in this Limify; its rules are \['all', 'export', 'items'\]"
    ):
        limify.peek("nope", ("user", 1))
    with pytest.raises(TypeError, match="identity must be"):
        limify.peek("items", "user-1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no application_limits"):
        limify_of(Rule("r", rate="1/s")).reset(APPLICATION, ("user", 1))


@pytest.mark.anyio
async def test_peek_and_reset_have_async_twins() -> None:
    """await limify.peek_async / reset_async go through the async limiter."""
    limify = limify_of(Rule("items", path="/items", rate="2/minute"))
    await limify.async_limiter.decide(RequestContext("GET", "/items", client_ip="192.0.2.1"))
    assert (await limify.peek_async("items", ("ip", "192.0.2.1"))).remaining == 0
    await limify.reset_async("items", ("ip", "192.0.2.1"))
    assert (await limify.peek_async("items", ("ip", "192.0.2.1"))).remaining == 1


def test_a_config_penalty_alone_is_peeked_and_reset_as_the_application() -> None:
    """With a penalty but no application limits, APPLICATION names the penalty: peek and reset work."""
    from limify import Penalty

    limify = limify_of(Rule("r", rate="1/minute"), penalty=Penalty("1/minute", 60))
    assert [status(limify, user_id=1) for _ in range(3)] == [200, 429, 429]
    assert limify.peek(APPLICATION, ("user", 1)).allowed is False
    limify.reset(APPLICATION, ("user", 1))
    assert limify.peek(APPLICATION, ("user", 1)).allowed is True
