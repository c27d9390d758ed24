"""The failure policies' backoff: one outage seen by many callers backs off once, probed by one at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import anyio
import pytest

from limify import Plan, StorageError
from limify.core.algorithms.base import Outcome
from limify.core.check import Check
from limify.core.algorithms.token_bucket import AsyncTokenBucketAlgorithm, TokenBucketAlgorithm
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from limify.core.resilience import GuardedStorage
from tests.frozen import frozen
from tests.servers import RedisServer

PLAN = Plan("p", 10, 60)


class DeadStorage:
    """A storage whose every call fails; ``barrier`` makes the failures happen all at once."""

    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        self.barrier = barrier
        self.calls = 0

    def execute(self, check: Check) -> Outcome:
        self.calls += 1
        if self.barrier is not None:
            self.barrier.wait(10)
        raise StorageError("connection refused")

    def clear(self, keys: Sequence[str]) -> None:
        raise StorageError("connection refused")

    def hold(self, key: str, ms: int) -> int:
        raise StorageError("connection refused")


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_failures_back_off_once() -> None:
    """8 calls failing at once (one outage) wait the first backoff, not 2**7 times it."""
    clock = FakeMonotonic()
    dead = DeadStorage(threading.Barrier(8))
    guard = GuardedStorage(dead, "fail_open", first_backoff=1.0, max_backoff=30.0, monotonic=clock)
    algorithm = TokenBucketAlgorithm(guard)
    threads = [threading.Thread(target=algorithm.check, args=("k", PLAN)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert dead.calls == 8
    dead.barrier = None
    clock.now = 100.9
    assert algorithm.check("k", PLAN).allowed  # fail_open answers without asking the storage
    assert dead.calls == 8
    clock.now = 101.0
    algorithm.check("k", PLAN)
    assert dead.calls == 9  # the storage is probed again after the first backoff


def test_failed_probes_double_the_backoff_up_to_the_cap() -> None:
    """Each failed probe doubles the wait before the next one (1, 2, 4 ... capped at max_backoff)."""
    clock = FakeMonotonic()
    dead = DeadStorage()
    algorithm = TokenBucketAlgorithm(
        GuardedStorage(dead, "fail_open", first_backoff=1.0, max_backoff=4.0, monotonic=clock)
    )
    probes_at = []
    for tick in range(200):
        clock.now = 100.0 + tick / 10
        before = dead.calls
        algorithm.check("k", PLAN)
        if dead.calls > before:
            probes_at.append(round(clock.now - 100.0, 1))
    assert probes_at == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 19.0]


def wait_for_probe(guard: GuardedStorage) -> None:
    """Block until some caller holds the guard's probe (up to 5 s)."""
    deadline = time.monotonic() + 5
    while not guard.probing:
        assert time.monotonic() < deadline, "no caller took the probe"
        time.sleep(0.005)


def test_one_caller_probes_while_the_others_get_the_policy_answer(doomed_redis: RedisServer) -> None:
    """A storage in backoff is probed by one call; calls made while that probe hangs answer at once."""
    clock = FakeMonotonic()
    adapter = RedisSyncAdapter.from_url(doomed_redis.url + "?socket_timeout=0.5&socket_connect_timeout=0.5")
    guard = GuardedStorage(adapter, "fail_open", monotonic=clock)
    algorithm = TokenBucketAlgorithm(guard)
    algorithm.check("k", PLAN)  # connects and loads the script
    with frozen(doomed_redis):
        algorithm.check("k", PLAN)  # times out: backoff
        assert not guard.healthy
        clock.now += 1.0  # the probe is due
        probe = threading.Thread(target=algorithm.check, args=("k", PLAN))
        probe.start()
        wait_for_probe(guard)
        for _ in range(5):
            assert algorithm.check("k", PLAN).allowed
        assert probe.is_alive()  # the five calls were answered while the probe still waited
        probe.join()
    assert not guard.probing
    clock.now += 2.0  # the failed probe doubled the backoff to 2 s
    # Counted by the server again (fail_open would claim 9; the calls that timed out may
    # have run there too once it resumed).
    assert algorithm.check("k", PLAN).remaining <= 8
    assert guard.healthy


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_cancelled_probe_hands_the_probe_on(doomed_redis: RedisServer) -> None:
    """A probe whose task is cancelled hands the probe on: the next call probes, not the fallback forever."""
    clock = FakeMonotonic()
    adapter = RedisAsyncAdapter.from_url(doomed_redis.url + "?socket_timeout=0.5&socket_connect_timeout=0.5")
    guard = GuardedStorage(adapter, "fail_open", monotonic=clock)
    algorithm = AsyncTokenBucketAlgorithm(guard)
    await algorithm.check("k", PLAN)
    with frozen(doomed_redis):
        await algorithm.check("k", PLAN)  # times out: backoff
        clock.now += 1.0
        with anyio.move_on_after(0.1):
            await algorithm.check("k", PLAN)  # the probe, cancelled while it waits
        assert not guard.probing
    assert (await algorithm.check("k", PLAN)).remaining <= 8  # this call probed, and the server counted it
    assert guard.healthy
