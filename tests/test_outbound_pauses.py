"""Retry-After parsing and the pause store, in memory and on the real Redis."""

from __future__ import annotations

from email.utils import formatdate

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock
from limify.contrib._outbound import OutboundGate, parse_retry_after
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter

NOW = 1_700_000_000.0


@given(st.integers(min_value=0, max_value=10**6))
def test_delta_seconds_are_taken_as_they_are(seconds: int) -> None:
    """'Retry-After: N' means N seconds, whatever the time."""
    assert parse_retry_after(str(seconds), NOW) == seconds
    assert parse_retry_after(f"  {seconds} ", NOW) == seconds


@given(st.integers(min_value=-86400, max_value=86400))
def test_http_dates_are_measured_from_now(offset: int) -> None:
    """'Retry-After: <HTTP date>' is the time left until that date; a past date is 0."""
    header = formatdate(NOW + offset, usegmt=True)
    assert parse_retry_after(header, NOW) == max(0, offset)


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", "+5", "nan", "inf", "1,5", "Mon, 99 Foo 2020", "\u0661\u0660", "\uff15"]
)
def test_unusable_values_give_none(value: str | None) -> None:
    """Missing, negative, signed, non-finite, garbled or non-ASCII values are ignored, not guessed at."""
    assert parse_retry_after(value, NOW) is None


def test_dates_without_a_zone_are_utc() -> None:
    """An HTTP date with '-0000' is read as UTC, not local time."""
    header = formatdate(NOW + 30, usegmt=True).replace("GMT", "-0000")
    assert parse_retry_after(header, NOW) == 30


def test_pause_length_is_capped_and_only_for_pause_statuses(clock: ManualClock) -> None:
    """Only pause_on statuses pause; max_pause caps the length; +1 ms covers Redis' ms clock."""
    gate: OutboundGate[object] = OutboundGate(
        "10/second", default_key=str, storage=InMemoryAdapter(clock=clock), max_pause=5
    )
    assert gate.pause_ms(429, "2") == 2001
    assert gate.pause_ms(503, "3600") == 5001
    assert gate.pause_ms(500, "2") == 0 and gate.pause_ms(429, None) == 0 and gate.pause_ms(429, "0") == 0


def test_memory_pause_only_grows_and_ends_on_time(clock: ManualClock) -> None:
    """A pause lasts its length on the adapter's clock; a shorter one never cuts it short."""
    pauses = InMemoryAdapter(clock=clock)
    assert pauses.hold("k", 0) == 0
    assert pauses.hold("k", 1000) == 1000
    assert pauses.hold("k", 200) == 1000
    clock.advance(0.4)
    assert pauses.hold("k", 0) == 600
    clock.advance(us=599_001)
    assert pauses.hold("k", 0) == 1  # rounded up: never reported over while time is left
    clock.advance(us=999)
    assert pauses.hold("k", 0) == 0 and pauses.hold("other", 0) == 0


def test_redis_pause_is_a_key_whose_ttl_is_the_pause(redis_client: redis.Redis) -> None:
    """On Redis a pause is one key with a TTL; reads write nothing; a shorter pause changes nothing."""
    pauses = RedisSyncAdapter(redis_client)
    assert pauses.hold("limify:up:#pause:h", 0) == 0
    assert redis_client.keys("*") == []
    assert pauses.hold("limify:up:#pause:h", 5000) == 5000
    assert 4900 < redis_client.pttl("limify:up:#pause:h") <= 5000
    assert 4900 < pauses.hold("limify:up:#pause:h", 100) <= 5000
    assert 4900 < redis_client.pttl("limify:up:#pause:h") <= 5000


def test_redis_pause_survives_script_flush(redis_client: redis.Redis) -> None:
    """After SCRIPT FLUSH the pause script is reloaded transparently."""
    pauses = RedisSyncAdapter(redis_client)
    pauses.hold("limify:p", 1000)
    redis_client.script_flush()
    assert 900 < pauses.hold("limify:p", 0) <= 1000


def test_async_redis_pause(redis_url: str) -> None:
    """The async store reads and writes the same key as the sync one."""
    import anyio

    sync = RedisSyncAdapter.from_url(redis_url)
    adapter = RedisAsyncAdapter.from_url(redis_url)

    async def main() -> tuple[int, int]:
        return await adapter.hold_async("limify:p", 3000), await adapter.hold_async("limify:p", 0)

    first, second = anyio.run(main)
    assert first == 3000 and 2900 < second <= 3000 and 2900 < sync.hold("limify:p", 0) <= 3000


def test_pauses_follow_the_adapter() -> None:
    """Sync and async clients of one in-memory adapter share its pauses; another adapter has its own."""
    import anyio

    one, two = InMemoryAdapter(), InMemoryAdapter()
    one.hold("k", 1000)
    assert 990 < anyio.run(one.hold_async, "k", 0) <= 1000
    assert two.hold("k", 0) == 0


def test_unknown_adapters_are_refused_with_advice() -> None:
    """An adapter without the store protocol's pause hold is refused when the gate is built."""

    class Custom:
        def execute(self, *args: object) -> None: ...

        def clear(self, keys: object) -> None: ...

    with pytest.raises(TypeError, match="hold"):
        OutboundGate("10/second", default_key=str, storage=Custom())  # type: ignore[arg-type]
