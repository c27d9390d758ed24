"""Compound limits: every limit must admit; a refusal consumes nothing anywhere."""

from __future__ import annotations

import threading

import pytest
from redis.crc import key_slot

from limify import GlobalLimit, InMemoryAdapter, ManualClock, Plan, RateLimitExceeded, parse_rates, rate_limit


def test_rate_string_with_semicolons_is_all_or_nothing(sync_storage: object, clock: ManualClock) -> None:
    """'2/second;3/minute': the minute limit refuses the 4th call even after the second refills."""

    @rate_limit("2/second;3/minute", storage=sync_storage, name="c")
    def call() -> None:
        return None

    call()
    call()
    with pytest.raises(RateLimitExceeded) as first:
        call()  # the per-second limit refuses
    assert first.value.result.limit == 2
    clock.advance(1)
    call()  # third call of the minute
    clock.advance(1)
    with pytest.raises(RateLimitExceeded) as second:
        call()  # the per-second limit has room, the minute one does not
    assert second.value.result.limit == 3
    assert second.value.retry_after == pytest.approx(18.0)
    assert call.rate_limit.peek().remaining == 0 or not call.rate_limit.peek().allowed


def test_refusal_by_one_limit_consumes_nothing_from_the_others(
    sync_storage: object, clock: ManualClock
) -> None:
    """A call refused by the small limit leaves the large limit's count untouched."""

    @rate_limit(["1/second", "5/hour"], storage=sync_storage, name="c", key="user")
    def call(user: str) -> None:
        return None

    call("u")
    for _ in range(10):
        with pytest.raises(RateLimitExceeded):
            call("u")
    for _ in range(4):
        clock.advance(1)
        call("u")  # the hour limit still had 4 left: none was burnt by the refusals
    clock.advance(1)
    with pytest.raises(RateLimitExceeded) as info:
        call("u")
    assert info.value.result.limit == 5


def test_per_key_and_global_limits_compose_atomically(sync_storage: object) -> None:
    """Each user gets 2; all users together get 3; refusals by either spend nothing."""

    @rate_limit(["2/hour", GlobalLimit("3/hour")], storage=sync_storage, name="g", key="user")
    def call(user: str) -> str:
        return user

    call("a")
    call("a")
    with pytest.raises(RateLimitExceeded):
        call("a")  # a's own limit; the global one keeps its third unit
    call("b")
    with pytest.raises(RateLimitExceeded) as info:
        call("c")  # c has its own room, the global limit has none
    assert info.value.result.limit == 3
    call.rate_limit.reset("a")  # resets a's own bucket only, not the shared one
    with pytest.raises(RateLimitExceeded):
        call("a")


def test_compound_keys_share_one_cluster_hash_slot() -> None:
    """All keys of one compound check hash to one slot (cluster-safe), with or without a global limit."""

    @rate_limit("10/second;1000/day", key="user", name="api")
    def per_user(user: str) -> None:
        return None

    @rate_limit(["10/second", GlobalLimit("100/second")], key="user", name="api2")
    def with_global(user: str) -> None:
        return None

    for fn in (per_user, with_global):
        for user in ("42", "a:b", "{x}", "z" * 500):
            keys = fn.rate_limit.keys(user)
            assert len(keys) == 2 and len(set(keys)) == 2
            assert len({key_slot(k.encode()) for k in keys}) == 1
    assert per_user.rate_limit.keys("42") == ("limify:{api:42}:default.1s", "limify:{api:42}:default.86400s")
    assert with_global.rate_limit.keys("42") == ("limify:{api2}:default.1s:42", "limify:{api2}:default.1s")


def test_single_limit_keeps_the_seed_key_layout() -> None:
    """One limit: limify:<name>:<plan>:<identity>, as in the seed."""

    @rate_limit("5/minute", key="user", name="items")
    def view(user: str) -> None:
        return None

    assert view.rate_limit.keys("42") == ("limify:items:default:42",)


def test_compound_all_or_nothing_under_threads(sync_storage: object) -> None:
    """8 threads x 200 calls on '100/hour;150/day' per key + a global: never over any limit."""
    admitted: list[str] = []
    lock = threading.Lock()

    @rate_limit(["100/hour", "150/day", GlobalLimit("180/hour")], storage=sync_storage, name="t", key="user")
    def call(user: str) -> None:
        with lock:
            admitted.append(user)

    def worker(index: int) -> None:
        for attempt in range(200):
            try:
                call("even" if (index + attempt) % 2 else "odd")
            except RateLimitExceeded:
                pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 180  # the global limit binds: exactly its size
    assert admitted.count("even") <= 100 and admitted.count("odd") <= 100


def test_compound_specs_are_validated() -> None:
    """Duplicate limits and empty parts are refused when decorating."""
    with pytest.raises(ValueError, match="same period"):
        rate_limit("1/s;5/s")
    with pytest.raises(ValueError, match="empty limit"):
        rate_limit("1/s;")
    with pytest.raises(TypeError, match="GlobalLimit"):
        rate_limit([1])  # type: ignore[list-item]
    assert [p.limit for p, _ in parse_rates([Plan("a", 1, 1), "2/s"])] == [1, 2]


def test_one_key_for_two_limits_is_refused() -> None:
    """Two limits sharing one key would mix their states: check_all refuses it."""
    from limify.core.algorithms.token_bucket import TokenBucketAlgorithm

    algorithm = TokenBucketAlgorithm(InMemoryAdapter())
    with pytest.raises(ValueError, match="its own key"):
        algorithm.check_all(["k", "k"], [Plan("a", 1, 1), Plan("b", 1, 2)])
