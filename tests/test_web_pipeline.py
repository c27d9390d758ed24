"""The request pipeline without a framework: rules, matching, identities, keys, plans, failure policy."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

import limify
from limify import (
    InMemoryAdapter,
    Limify,
    LimifyConfig,
    ManualClock,
    Plan,
    RequestContext,
    Rule,
    StorageError,
)
from limify.core.algorithms.token_bucket import AsyncTokenBucketAlgorithm, TokenBucketAlgorithm
from limify.core.client_ip import resolve_client_ip
from limify.core.limiter import AsyncLimiter, SyncLimiter, build_keys
from limify.core.redis_adapter import RedisSyncAdapter
from tests.servers import RedisServer


def make(rules: list[Any], clock: ManualClock, **options: Any) -> Limify:
    """A Limify on a private in-memory store driven by the manual clock."""
    default_rule = options.pop("default_rule", None)
    return Limify(config=LimifyConfig(rules, default_rule), storage=InMemoryAdapter(clock=clock), **options)


# --- rules and matching ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/items", "/items", True),
        ("/items", "/items/", True),
        ("/items", "//items", True),
        ("/items", "/items/1", False),
        ("/items/*", "/items/1", True),
        ("/items/*", "/items", False),
        ("/items/*", "/items/1/2", False),
        ("/items/{item_id}", "/items/abc", True),
        ("/api/**", "/api", True),
        ("/api/**", "/api/a/b/c", True),
        ("/api/**", "/apix", False),
        ("/**", "/", True),
        ("/a/*/c", "/a/b/c", True),
        ("/a/*/c", "/a/b/d", False),
        ("/Items", "/items", False),
    ],
)
def test_path_patterns(pattern: str, path: str, expected: bool) -> None:
    """`*`/`{name}` match one segment, a final `**` any rest; empty segments never dodge a rule."""
    assert Rule("r", "GET", pattern, "1/s").matches("GET", path) is expected


def test_methods_match_case_insensitively_and_star_matches_any() -> None:
    """A rule's method is matched case-insensitively; '*' and lists work."""
    config = LimifyConfig([Rule("writes", ["POST", "put"], "/x", "1/s"), Rule("any", "*", "/y", "1/s")])
    assert config.match("put", "/x").id == "writes"  # type: ignore[union-attr]
    assert config.match("GET", "/x") is None
    assert config.match("DELETE", "/y").id == "any"  # type: ignore[union-attr]


def test_a_get_rule_covers_head_and_a_head_rule_stays_head_only() -> None:
    """Frameworks run GET handlers for HEAD, so a rule naming GET matches HEAD; HEAD alone stays HEAD."""
    config = LimifyConfig([Rule("reads", "GET", "/x", "1/s"), Rule("probes", "head", "/y", "1/s")])
    assert config.match("HEAD", "/x").id == "reads"  # type: ignore[union-attr]
    assert config.match("head", "/y").id == "probes"  # type: ignore[union-attr]
    assert config.match("GET", "/y") is None
    assert Rule("writes", ["POST", "GET"], "/z", "1/s").matches("HEAD", "/z")
    assert not Rule("writes", ["POST"], "/z", "1/s").matches("HEAD", "/z")


def test_highest_priority_wins_and_ties_go_to_the_first_listed() -> None:
    """Among matching rules the highest priority applies; equal priorities keep list order."""
    config = LimifyConfig(
        [
            {"id": "broad", "path": "/api/**", "rate": "100/minute"},
            {"id": "also-broad", "path": "/api/**", "rate": "50/minute"},
            {"id": "login", "method": "POST", "path": "/api/login", "rate": "5/minute", "priority": 10},
        ],
        default_rule={"id": "global", "rate": "1000/hour"},
    )
    assert config.match("POST", "/api/login").id == "login"  # type: ignore[union-attr]
    assert config.match("GET", "/api/login").id == "broad"  # type: ignore[union-attr]
    assert config.match("GET", "/other").id == "global"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"id": "a", "path": "/x", "rate": "10 per fortnight"}, "rule 'a'"),
        ({"id": "b", "path": "", "rate": "1/s"}, "rule 'b': path"),
        ({"id": "c", "path": "items", "rate": "1/s"}, "must start with '/'"),
        ({"id": "d", "path": "/a/**/b", "rate": "1/s"}, "'**' may only end"),
        ({"id": "e", "path": "/a*", "rate": "1/s"}, "whole segments"),
        ({"id": "f", "path": "/x", "rate": "1/s", "method": "GE T"}, "not an HTTP method"),
        ({"id": "g", "path": "/x", "rate": "1/s", "on_storage_error": "maybe"}, "on_storage_error"),
        ({"id": "h", "path": "/x", "rate": "1/s", "algorithm": "nope"}, "unknown algorithm"),
        ({"id": "i", "path": "/x", "rate": "5/s", "cost": 6}, "cost"),
        ({"id": "j", "path": "/x", "rate": "1/s;2/second"}, "same period"),
        ({"id": "k", "path": "/x"}, "needs a rate"),
        ({"id": "l", "path": "/x", "rate": "1/s", "colour": "red"}, "unknown keys"),
        ({"path": "/x", "rate": "1/s"}, "no 'id'"),
    ],
)
def test_bad_rules_are_refused_at_construction_naming_the_rule(rule: dict[str, Any], message: str) -> None:
    """Every invalid rule raises ValueError when the config is built, with a message naming it."""
    with pytest.raises(ValueError) as raised:
        LimifyConfig([rule])
    assert message in str(raised.value)
    assert "id" not in rule or f"rule {rule['id']!r}" in str(raised.value)


def test_duplicate_ids_are_refused() -> None:
    """Two rules with one id (the default rule included) are a ValueError naming the id."""
    with pytest.raises(ValueError, match="rule 'x'"):
        LimifyConfig([Rule("x", path="/a", rate="1/s")], default_rule=Rule("x", rate="1/s"))


def test_bad_trusted_proxy_is_refused() -> None:
    """A trusted proxy that is not an address or CIDR is a ValueError naming it."""
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        LimifyConfig(trusted_proxies=["10.0.0.0/33"])


# --- identities and keys -----------------------------------------------------------------------


def test_identity_priority_and_the_seed_key_format(clock: ManualClock) -> None:
    """user_id beats org_id beats api_key beats client_ip beats anonymous, in keys like the seed's."""
    limiter = make([Rule("items", "GET", "/items", "10/minute")], clock).sync_limiter
    everything = dict(user_id=42, org_id="acme", api_key="k1", client_ip="10.0.0.1")
    expected = [
        ("user_id", "limify:items:default:user:42"),
        ("org_id", "limify:items:default:org:acme"),
        ("api_key", "limify:items:default:apikey:k1"),
        ("client_ip", "limify:items:default:ip:10.0.0.1"),
    ]
    for field, key in expected:
        assert limiter.decide(RequestContext("GET", "/items", **everything)).keys == (key,)
        del everything[field]
    assert limiter.decide(RequestContext("GET", "/items", user_id="")).keys == (
        "limify:items:default:anonymous:all",
    )


def test_extra_context_attributes_are_kept() -> None:
    """RequestContext accepts extra attributes for providers and resolvers."""
    context = RequestContext("get", "/x", tenant="acme")
    assert context.tenant == "acme" and context.method == "GET"  # type: ignore[attr-defined]


identity_values = st.one_of(st.text(), st.binary(), st.integers()).filter(lambda v: v != "" and v != b"")


@given(a=identity_values, b=identity_values)
def test_different_identities_never_share_a_key(a: Any, b: Any) -> None:
    """Values with ':', braces, '*', spaces or newlines never make two identities collide; keys stay short."""
    rule = Rule("r", rate="1/s")
    key_a = build_keys(rule, rule.plans, rule.shared, ("user", a))[0]
    key_b = build_keys(rule, rule.plans, rule.shared, ("user", b))[0]
    same = limify.core.keys.identity_text(a) == limify.core.keys.identity_text(b)
    assert (key_a == key_b) is same
    assert len(key_a) < 200 and "{" not in key_a and " " not in key_a


def test_crafted_values_do_not_collide() -> None:
    """An identity value cannot impersonate another type, plan or rule by embedding separators."""
    rule = Rule("r", rate="1/s")
    keys = {
        build_keys(rule, rule.plans, rule.shared, ("user", "1:ip:2"))[0],
        build_keys(rule, rule.plans, rule.shared, ("user", "1"))[0],
        build_keys(rule, rule.plans, rule.shared, ("ip", "2"))[0],
        build_keys(Rule("r:default:user", rate="1/s"), rule.plans, rule.shared, ("user", "1"))[0],
    }
    assert len(keys) == 4


def test_compound_rates_use_hash_tagged_keys_in_one_slot(clock: ManualClock) -> None:
    """A compound rule's keys share one Redis Cluster slot and admit all-or-nothing."""
    limiter = make([Rule("api", rate="2/second;3/minute")], clock).sync_limiter
    context = RequestContext("GET", "/x", user_id="a:b{c}")
    decision = limiter.decide(context)
    assert decision.keys == (
        "limify:{api:user:a%3Ab%7Bc%7D}:default.1s",
        "limify:{api:user:a%3Ab%7Bc%7D}:default.60s",
    )
    assert len({key_slot(key.encode()) for key in decision.keys}) == 1
    assert limiter.check(context).allowed
    assert not limiter.check(context).allowed  # the per-second limit refuses ...
    clock.advance(1)
    assert limiter.check(context).allowed  # ... and consumed nothing of the minute
    clock.advance(1)
    refused = limiter.check(context)
    assert not refused.allowed and refused.limit == 3


def test_unmatched_requests_are_unlimited(clock: ManualClock) -> None:
    """A request no rule matches is allowed and reported as limify.UNLIMITED (limit 0)."""
    limiter = make([Rule("items", "GET", "/items", "1/minute")], clock).sync_limiter
    for _ in range(3):
        result = limiter.check(RequestContext("GET", "/elsewhere"))
        assert result is limify.UNLIMITED and result.allowed and result.limit == 0


def test_rule_algorithm_and_cost(clock: ManualClock) -> None:
    """A rule's cost is spent per request; its algorithm name picks the shell."""
    limiter = make([Rule("heavy", rate="10/minute", cost=4, algorithm="token_bucket")], clock).sync_limiter
    context = RequestContext("GET", "/", client_ip="1.1.1.1")
    assert [limiter.check(context).remaining for _ in range(2)] == [6, 2]
    assert not limiter.check(context).allowed


# --- plans and resolvers --------------------------------------------------------------------------


class TierProvider:
    """Plans by the context's `tier` attribute."""

    def resolve(self, context: RequestContext, rule: Rule) -> Plan | None:
        tier = getattr(context, "tier", None)
        return Plan("pro", 5, 60) if tier == "pro" else None


def test_plan_provider_and_fallback_to_the_rule_rate(clock: ManualClock) -> None:
    """A provider's plan replaces the rule's rate (its id in the key); None falls back to 'default'."""
    limiter = make([Rule("items", rate="1/minute")], clock, plan_provider=TierProvider()).sync_limiter
    pro = RequestContext("GET", "/", user_id=7, tier="pro")
    free = RequestContext("GET", "/", user_id=7)
    assert limiter.decide(pro).keys == ("limify:items:pro:user:7",)  # spends 1 of 5
    assert all(limiter.check(pro).allowed for _ in range(4))
    assert not limiter.check(pro).allowed
    assert limiter.check(free).allowed and not limiter.check(free).allowed


@pytest.mark.anyio
async def test_async_limiter_awaits_async_plan_providers(clock: ManualClock) -> None:
    """An async limiter awaits a provider returning an awaitable (e.g. a database lookup)."""

    async def provider(context: RequestContext) -> Plan:
        return Plan("gold", 2, 60)

    limify_ = make([Rule("items", rate="1/minute")], clock, plan_provider=provider)
    limiter = limify_.async_limiter
    assert isinstance(limiter, AsyncLimiter)
    context = RequestContext("GET", "/", user_id=1)
    assert [(await limiter.check(context)).allowed for _ in range(3)] == [True, True, False]
    with pytest.raises(TypeError, match="async plan provider"):
        limify_.sync_limiter.check(context)


def test_key_resolver_overrides_identity(clock: ManualClock) -> None:
    """A key_resolver picks the identity; None from it falls back to the built-in priority."""

    def by_tenant(context: RequestContext) -> tuple[str, Any] | None:
        tenant = getattr(context, "tenant", None)
        return ("tenant", tenant) if tenant else None

    limiter = make([Rule("items", rate="1/minute")], clock, key_resolver=by_tenant).sync_limiter
    assert limiter.decide(RequestContext("GET", "/", user_id=1, tenant="acme")).keys == (
        "limify:items:default:tenant:acme",
    )
    assert limiter.decide(RequestContext("GET", "/", user_id=1)).keys == ("limify:items:default:user:1",)


def test_limify_picks_sync_or_async_from_the_algorithm(clock: ManualClock) -> None:
    """An algorithm instance decides .limiter's kind; a name gives a sync one; both share buckets."""
    memory = InMemoryAdapter(clock=clock)
    config = LimifyConfig([Rule("r", rate="1/minute")])
    assert isinstance(Limify(TokenBucketAlgorithm(memory), config).limiter, SyncLimiter)
    both = Limify(AsyncTokenBucketAlgorithm(memory), config)
    assert isinstance(both.limiter, AsyncLimiter)
    assert both.sync_limiter.check(RequestContext("GET", "/", user_id=1)).allowed
    assert (
        not Limify(config=config, storage=memory).limiter.check(RequestContext("GET", "/", user_id=1)).allowed
    )
    with pytest.raises(TypeError, match="not both"):
        Limify(TokenBucketAlgorithm(memory), config, storage="memory://")
    with pytest.raises(TypeError, match="LimifyConfig"):
        Limify(config=[Rule("r", rate="1/s")])  # type: ignore[arg-type]


# --- client IP --------------------------------------------------------------------------------


def nets(*cidrs: str) -> list[Any]:
    """Parsed networks."""
    return [ipaddress.ip_network(cidr) for cidr in cidrs]


def test_forwarding_headers_are_ignored_from_untrusted_peers() -> None:
    """A client sending X-Forwarded-For or Forwarded cannot change its identity."""
    for header, value in [("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=1.2.3.4")]:
        assert resolve_client_ip(
            "203.0.113.9", [value], trusted_proxies=nets("10.0.0.0/8"), header=header
        ) == ("203.0.113.9")
        assert resolve_client_ip("203.0.113.9", [value], trusted_proxies=[], header=header) == "203.0.113.9"


def test_trusted_proxy_chain_is_walked_from_the_right() -> None:
    """Behind trusted proxies the rightmost untrusted hop is the client; spoofed left entries are ignored."""
    trusted = nets("10.0.0.0/8", "2001:db8::/32")
    xff = ["6.6.6.6, 198.51.100.7", "10.1.1.1"]  # client spoofed 6.6.6.6; two header lines
    assert resolve_client_ip("10.0.0.2", xff, trusted_proxies=trusted) == "198.51.100.7"
    forwarded = ['for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=198.51.100.7:8080']
    assert resolve_client_ip("10.0.0.2", forwarded, trusted_proxies=trusted, header="forwarded") == (
        "198.51.100.7"
    )
    assert resolve_client_ip("10.0.0.2", ["10.0.0.3"], trusted_proxies=trusted) == "10.0.0.3"
    assert resolve_client_ip("10.0.0.2", ["garbage"], trusted_proxies=trusted) == "10.0.0.2"
    assert resolve_client_ip("::ffff:10.0.0.2", ["192.0.2.1"], trusted_proxies=trusted) == "192.0.2.1"
    assert resolve_client_ip(None, ["192.0.2.1"], trusted_proxies=trusted) is None


# --- storage failure ----------------------------------------------------------------------------


def test_storage_failure_follows_each_rules_policy(doomed_redis: RedisServer) -> None:
    """Redis stopped: fail_open admits (a full limit, uncounted), fail_closed refuses, local counts in process."""
    config = LimifyConfig(
        [
            Rule("open", path="/open", rate="1/minute", on_storage_error="fail_open"),
            Rule("closed", path="/closed", rate="1/minute"),
            Rule("local", path="/local", rate="1/minute", on_storage_error="local"),
        ]
    )
    limiter = Limify(config=config, storage=RedisSyncAdapter.from_url(doomed_redis.url)).sync_limiter
    assert limiter.check(RequestContext("GET", "/open", user_id=1)).allowed
    assert not limiter.check(RequestContext("GET", "/open", user_id=1)).allowed
    doomed_redis.stop()
    for _ in range(2):
        opened = limiter.decide(RequestContext("GET", "/open", user_id=2))
        assert opened.status == 200 and opened.answered_by_policy and not opened.limited
        assert (opened.result.remaining, opened.result.limit) == (0, 1)  # what @rate_limit reports too
    # User 1's refusal is known to hold for a minute: answered in process, with or without Redis.
    assert limiter.decide(RequestContext("GET", "/open", user_id=1)).status == 429
    closed = limiter.decide(RequestContext("GET", "/closed", user_id=1))
    assert closed.status == 503 and not closed.result.allowed
    assert isinstance(closed.storage_error, StorageError)
    with pytest.raises(StorageError):
        limiter.check(RequestContext("GET", "/closed", user_id=1))
    local = [limiter.decide(RequestContext("GET", "/local", user_id=1)).status for _ in range(2)]
    assert local == [200, 429]


def test_registered_provider_and_plan_names(clock: ManualClock) -> None:
    """A provider named in limify.plans may answer with a registered plan name."""
    registry = limify.plans
    registry.register("web-gold", "3/minute")
    registry.register_provider("web-tiers", lambda context: "web-gold" if context.user_id == "vip" else None)
    limiter = make([Rule("items", rate="1/minute")], clock, plan_provider="web-tiers").sync_limiter
    vip = RequestContext("GET", "/", user_id="vip")
    assert limiter.decide(vip).keys == ("limify:items:web-gold:user:vip",)
    assert [limiter.check(vip).allowed for _ in range(3)] == [True, True, False]
    with pytest.raises(ValueError, match="unknown plan provider"):
        Limify(config=LimifyConfig(), plan_provider="no-such-provider")


def test_global_limit_in_a_rule_is_shared_by_every_identity(clock: ManualClock) -> None:
    """A GlobalLimit in a rule's rate is one bucket for all identities, checked with each one's own."""
    rule = Rule("search", rate=["2/minute", limify.GlobalLimit("3/minute")])
    limiter = make([rule], clock).sync_limiter
    first = limiter.decide(RequestContext("GET", "/", user_id="a"))
    assert first.keys == ("limify:{search}:default.60s:user:a", "limify:{search}:default.60s")
    assert limiter.check(RequestContext("GET", "/", user_id="a")).allowed
    assert limiter.check(RequestContext("GET", "/", user_id="b")).allowed
    refused = limiter.check(RequestContext("GET", "/", user_id="c"))
    assert not refused.allowed and refused.limit == 3
