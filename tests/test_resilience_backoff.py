"""The failure policies' backoff: one outage seen by many concurrent callers backs off once."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from limify import Plan, StorageError
from limify.core.algorithms.base import CONSUME, AlgorithmSpec, Outcome
from limify.core.algorithms.token_bucket import TokenBucketAlgorithm
from limify.core.resilience import GuardedStorage

PLAN = Plan("p", 10, 60)


class DeadStorage:
    """A storage whose every call fails; ``barrier`` makes the failures happen all at once."""

    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        self.barrier = barrier
        self.calls = 0

    def execute(
        self, spec: AlgorithmSpec, keys: Sequence[str], plans: Sequence[Plan], cost: int,
        mode: str = CONSUME, token: str = "",
    ) -> Outcome:  # fmt: skip
        self.calls += 1
        if self.barrier is not None:
            self.barrier.wait(10)
        raise StorageError("connection refused")

    def clear(self, keys: Sequence[str]) -> None:
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
