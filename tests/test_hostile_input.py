"""Hostile input: fuzzed rates, plans, costs and identities raise only documented errors,
never collide in a key, and never make keys or memory grow without bound."""

from __future__ import annotations

import ipaddress
import sys
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import GlobalLimit, InMemoryAdapter, ManualClock, Plan, RateLimitExceeded, parse_rate, rate_limit
from limify.core.algorithms import ALGORITHMS
from limify.core.algorithms.token_bucket import TokenBucketAlgorithm
from limify.core.client_ip import resolve_client_ip
from limify.core.keys import MAX_KEY_LENGTH, MAX_PART_LENGTH, encode_part, identity_text, limit_keys

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.lists(st.integers(), max_size=3),
    st.builds(object),
)
rate_like = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\s*-?\d{0,20}(\.\d+)?\s*/\s*[a-zA-Z]{0,9}\s*(;.*)?", fullmatch=True),
    anything,
)
identities = st.one_of(
    st.text(),
    st.text(alphabet=":{}* \n\t%#~", max_size=20),
    st.binary(),
    st.integers(),
    st.text(min_size=200, max_size=400),
)


@given(rate_like)
def test_rate_specs_raise_only_value_or_type_errors(value: Any) -> None:
    """Any rate spec (strings, compound strings, junk objects) parses or raises ValueError/TypeError."""
    try:
        rate_limit(value)
    except (ValueError, TypeError):
        pass
    try:
        parse_rate(value)
    except (ValueError, TypeError):
        pass


@given(anything, anything, anything)
def test_plan_definitions_raise_only_value_or_type_errors(plan_id: Any, limit: Any, period: Any) -> None:
    """Plan(...) with arbitrary fields either is a valid plan or raises ValueError/TypeError."""
    try:
        plan = Plan(plan_id, limit, period)
    except (ValueError, TypeError):
        return
    assert plan.limit >= 1 and plan.period_us >= 1


@given(cost=anything, limit=st.integers(1, 10))
def test_costs_raise_only_value_or_type_errors(cost: Any, limit: int) -> None:
    """A bad cost is refused at decoration (static) or at the call (computed), only with ValueError/TypeError."""
    try:
        decorated = rate_limit(f"{limit}/s", cost=cost, storage=InMemoryAdapter())(lambda: None)
    except (ValueError, TypeError):
        return
    try:
        decorated()
    except (ValueError, TypeError, RateLimitExceeded):
        pass


@given(st.lists(identities, min_size=2, max_size=8, unique_by=identity_text))
def test_distinct_identities_never_share_a_key(values: list[Any]) -> None:
    """Identities with separators, braces, wildcards, whitespace, raw bytes or huge text get distinct, bounded parts."""
    encoded = [encode_part(value) for value in values]
    assert len(set(encoded)) == len(values)
    for part in encoded:
        assert len(part) <= MAX_PART_LENGTH
        assert not set(part) & set(":{}* \n\t\r")


@given(
    name=st.text(),
    plan_id=st.text(min_size=1),
    identity=identities,
    compound=st.booleans(),
    shared=st.booleans(),
)
def test_keys_stay_under_the_documented_length(
    name: str, plan_id: str, identity: Any, compound: bool, shared: bool
) -> None:
    """Whatever the names and values, a storage key never exceeds MAX_KEY_LENGTH characters."""
    ids = [encode_part(plan_id)] * (2 if compound else 1)
    periods = [1_000_000, 86_400_000_000 * 400][: len(ids)]
    flags = [False, shared][: len(ids)]
    for key in limit_keys(encode_part(name), ids, periods, flags, encode_part(identity)):
        assert len(key) <= MAX_KEY_LENGTH


def test_a_megabyte_identity_is_hashed_quickly() -> None:
    """A 1 MB identity value becomes a 66-character part, and two such values differ."""
    big = "x" * 1_000_000
    started = time.perf_counter()
    first, second = encode_part(big), encode_part(big + "y")
    assert time.perf_counter() - started < 1.0
    assert len(first) == len(second) == 66 and first != second


def test_lua_scripts_are_package_constants() -> None:
    """Scripts come only from the package's .lua files: the same text whatever the calls, no user data."""
    for sync_class, _ in ALGORITHMS.values():
        script = sync_class.spec.script
        assert script is sync_class.spec.script  # built once
        assert "ARGV" in script and "KEYS" in script
        assert "limify:" not in script  # no key or identity is ever formatted into it


def test_a_million_identities_stay_within_max_keys() -> None:
    """1,000,000 distinct identities: the in-memory store never holds more than max_keys."""
    max_keys = 20_000
    adapter = InMemoryAdapter(max_keys=max_keys)
    check = TokenBucketAlgorithm(adapter).check
    plan = Plan("default", 5, 60)
    for start in range(0, 1_000_000, 100_000):
        for index in range(start, start + 100_000):
            check(f"limify:f:default:{index}", plan)
        assert len(adapter) == max_keys


def test_memory_per_held_key_is_bounded() -> None:
    """Memory grows with held keys only, under 400 bytes each (key string included), then stops at max_keys."""
    max_keys = 20_000
    adapter = InMemoryAdapter(max_keys=max_keys)
    check = TokenBucketAlgorithm(adapter).check
    plan = Plan("default", 5, 60)
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    for index in range(3 * max_keys):
        check(f"limify:f:default:{index}", plan)
    used = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert len(adapter) == max_keys
    assert used < max_keys * 400


def test_eviction_gives_an_evicted_key_at_most_one_more_limit(clock: ManualClock) -> None:
    """A live key pushed out by max_keys starts afresh: at most one extra limit per eviction, never more."""
    adapter = InMemoryAdapter(max_keys=2, clock=clock)

    @rate_limit("2/hour", key="who", storage=adapter, name="ev")
    def call(who: str) -> None:
        return None

    def admitted(who: str) -> int:
        count = 0
        for _ in range(5):
            try:
                call(who)
                count += 1
            except RateLimitExceeded:
                pass
        return count

    call("a")  # one of its two spent
    call("b")
    call("c")  # a is the least recently used: evicted
    assert admitted("a") == 2  # afresh: one call more than its limit allowed, no more
    # A key whose refusal is known to hold stays refused when evicted meanwhile: the
    # refusal is held beside the store until its retry_after (limify.core.refusals).
    call("d")
    call("e")  # a is evicted again, refused
    assert admitted("a") == 0
    clock.advance(3600)
    assert admitted("a") == 2


def test_global_limit_and_hostile_keys_together() -> None:
    """A hostile identity next to a GlobalLimit still yields keys in one hash slot, distinct per identity."""
    from redis.crc import key_slot

    @rate_limit(["5/s", GlobalLimit("50/s")], key="who", name="x:{y}")
    def call(who: str) -> None:
        return None

    first, second = call.rate_limit.keys("{a}:*"), call.rate_limit.keys("{a}:**")
    assert first != second
    assert len({key_slot(k.encode()) for k in first + second}) == 1


@given(st.integers(0, 30_000).flatmap(lambda digits: st.integers(-(10**digits), 10**digits)))
def test_any_int_key_is_its_decimal_digits(value: int) -> None:
    """Int keys of any size (past Python's 4,300-digit str() limit) are keyed by their decimal digits."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # the reference conversion, unlimited
    try:
        digits = str(value)
    finally:
        sys.set_int_max_str_digits(limit)
    assert identity_text(value) == digits.encode()
    assert encode_part(value) == encode_part(digits)


def test_a_decorated_call_keyed_by_a_huge_int_works() -> None:
    """A 5,000-digit int key is admitted and counted like any other key, apart from its neighbour."""
    big = 10**5000 + 7

    @rate_limit("1/hour", key="user", storage=InMemoryAdapter())
    def fetch(user: int) -> str:
        return "ok"

    assert fetch(big) == "ok"
    with pytest.raises(RateLimitExceeded):
        fetch(big)
    assert fetch(big + 1) == "ok"


#: Header lines a client may send: printable Latin-1, commas, quotes, brackets, ``for=`` included.
header_lines = st.lists(
    st.one_of(
        st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40),
        st.lists(st.ip_addresses().map(str), max_size=5).map(", ".join),
        st.lists(st.ip_addresses().map(lambda a: f'for="[{a}]"'), max_size=5).map(", ".join),
    ),
    max_size=3,
)


def _entry(address: ipaddress.IPv4Address | ipaddress.IPv6Address, header: str, port: bool) -> str:
    """How a proxy writes the address it saw into ``header``."""
    if header == "x-forwarded-for":
        return str(address)
    host = f"[{address}]" if address.version == 6 else str(address)
    return f'for="{host}:4711"' if port else f'for="{host}"'


@given(
    header=st.sampled_from(["x-forwarded-for", "forwarded"]),
    sent=header_lines,
    client=st.ip_addresses(),
    proxies=st.lists(st.ip_addresses(), min_size=1, max_size=4),
    appends=st.lists(st.booleans(), min_size=4, max_size=4),
    port=st.booleans(),
    peer_known=st.booleans(),
)
def test_under_trusted_hops_a_client_cannot_choose_its_identity(
    header: str, sent: list[str], client: Any, proxies: list[Any], appends: list[bool], port: bool,
    peer_known: bool,
) -> None:  # fmt: skip
    """Whatever a client prepends to the header, trusted_hops=N yields the address the N-th proxy wrote."""
    lines = list(sent)
    # The outermost proxy saw the client; each next one saw the previous proxy. The
    # last proxy is the socket peer. A proxy appends to the last line or adds its own.
    for address, append in zip([client, *proxies[:-1]], appends, strict=False):
        if lines and append:
            lines[-1] = f"{lines[-1]}, {_entry(address, header, port)}"
        else:
            lines.append(_entry(address, header, port))
    peer = str(proxies[-1]) if peer_known else None
    expected = client.ipv4_mapped if client.version == 6 and client.ipv4_mapped else client
    assert resolve_client_ip(peer, lines, trusted_hops=len(proxies), header=header) == str(expected)
