"""Exactness of the window algorithms under threads: 8 x 1000 attempts at 500 admit exactly 500."""

from __future__ import annotations

import threading

import pytest
import redis

from limify import InMemoryAdapter, ManualClock, Plan, parse_rate
from limify.core.algorithms.base import SyncAlgorithm
from limify.core.algorithms.fixed_window import FixedWindowAlgorithm
from limify.core.algorithms.quota import QuotaAlgorithm
from limify.core.algorithms.sliding_window import SlidingWindowAlgorithm
from limify.core.redis_adapter import RedisSyncAdapter
from tests.test_exactness import hammer

#: (algorithm, plan): long periods, and a clock pinned mid-window, so no window rolls over.
CASES = [
    pytest.param(FixedWindowAlgorithm, Plan("default", 500, 3600), id="fixed_window"),
    pytest.param(SlidingWindowAlgorithm, Plan("default", 500, 3600), id="sliding_window"),
    pytest.param(QuotaAlgorithm, parse_rate("500/day"), id="quota-day"),
    pytest.param(QuotaAlgorithm, parse_rate("500/month"), id="quota-month"),
]


@pytest.mark.parametrize(("algorithm_class", "plan"), CASES)
def test_threads_in_memory_admit_exactly_the_limit(
    algorithm_class: type[SyncAlgorithm], plan: Plan, clock: ManualClock
) -> None:
    """8 threads x 1000 attempts on one in-memory key admit exactly 500."""
    algorithm = algorithm_class(InMemoryAdapter(clock=clock))
    assert hammer(lambda: algorithm.check("limify:t:default", plan).allowed) == 500


@pytest.mark.parametrize(("algorithm_class", "plan"), CASES)
def test_threads_on_redis_admit_exactly_the_limit(
    algorithm_class: type[SyncAlgorithm], plan: Plan, clock: ManualClock, redis_url: str
) -> None:
    """8 threads, each with its own client (as separate processes would), admit exactly 500."""
    local = threading.local()
    clients: list[redis.Redis] = []

    def check() -> bool:
        if not hasattr(local, "algorithm"):
            client = redis.Redis.from_url(redis_url)
            clients.append(client)
            local.algorithm = algorithm_class(RedisSyncAdapter(client, clock=clock))
        return bool(local.algorithm.check("limify:t:default", plan).allowed)

    try:
        assert hammer(check) == 500
    finally:
        for client in clients:
            client.close()
