"""Exactness on PostgreSQL and Memcached: contention never over-admits, compounds stay all or nothing.

8 threads x 250 attempts at 500/hour on one key, each thread with an adapter
of its own (as separate app servers would), admit exactly 500 for every
algorithm whose clock is pinned (nothing refills); 4 processes x 8 threads do
the same. A compound limit refused under contention consumes nothing.

Four attempts per admission are enough: what could over-admit is the race for
the last units of the limit, which all eight threads run at once; the refusals
after it only cost time (each one is a transaction on PostgreSQL).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from limify import GlobalLimit, ManualClock, Plan, RateLimitExceeded, rate_limit
from limify.core.algorithms import ALGORITHMS
from limify.core.algorithms.base import CONSUME
from limify.core.memcached_adapter import MemcachedSyncAdapter
from limify.core.postgres_adapter import PostgresSyncAdapter
from tests.exactness_worker import attempt_from_threads, spawn_pool

PLAN = Plan("default", 500, 3600)
THREADS, ATTEMPTS = 8, 250
NOW_US = 1_700_000_000_000_000


def adapter_for(url: str, clock: ManualClock) -> Any:
    """A sync adapter of its own for ``url`` on ``clock``."""
    if url.startswith("memcached"):
        return MemcachedSyncAdapter.from_url(url, clock=clock)
    return PostgresSyncAdapter.from_url(url, clock=clock)


@pytest.fixture(params=["postgres", "memcached"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of each store under test."""
    return str(
        request.getfixturevalue("postgres_server_url" if request.param == "postgres" else "memcached_url")
    )


def hammer(
    url: str, attempt: Callable[[Any, int, int], bool], *, now_us: int = NOW_US, attempts: int = ATTEMPTS
) -> int:
    """THREADS threads, each with its own adapter on a clock pinned at ``now_us``, x ``attempts``; how many
    were admitted."""
    admitted = [0] * THREADS
    barrier = threading.Barrier(THREADS)
    adapters = [adapter_for(url, ManualClock(now_us)) for _ in range(THREADS)]

    def worker(index: int) -> None:
        barrier.wait()
        admitted[index] = sum(attempt(adapters[index], index, n) for n in range(attempts))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for adapter in adapters:
        adapter.close()
    return sum(admitted)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fixed_window", "sliding_log", "quota", "concurrency"])
def test_threads_admit_exactly_the_limit(store_url: str, name: str) -> None:
    """8 threads x 250 attempts at 500/hour on one key admit exactly 500 (every call its own token)."""
    key = f"limify:exact:{uuid.uuid4().hex}"
    shells: dict[int, Any] = {}

    def attempt(adapter: Any, index: int, n: int) -> bool:
        shell = shells.get(index) or shells.setdefault(index, ALGORITHMS[name][0](adapter))
        return bool(shell.check_all([key], [PLAN], 1, CONSUME, f"{index}-{n}").allowed)

    assert hammer(store_url, attempt) == PLAN.limit


@pytest.mark.slow
def test_a_refused_compound_consumes_nothing_under_contention(store_url: str) -> None:
    """Threads racing on 250/minute + 500/hour of one identity: 250 admitted per minute, twice, then none.

    Each round makes 2000 attempts: had the refused ones consumed the hourly limit,
    the second minute would admit nothing.
    """
    prefix = f"limify:compound:{uuid.uuid4().hex}:"
    keys, plans = [prefix + "minute", prefix + "hour"], [Plan("minute", 250, 60), PLAN]

    def attempt(adapter: Any, index: int, n: int) -> bool:
        shell = ALGORITHMS["fixed_window"][0](adapter)
        return bool(shell.check_all(keys, plans, 1, CONSUME, "").allowed)

    start = NOW_US - NOW_US % 3_600_000_000  # the hour's first minute: three minutes in one hourly window
    rounds = [
        hammer(store_url, attempt, now_us=start + minute * 60_000_000, attempts=250) for minute in range(3)
    ]
    assert rounds == [250, 250, 0]


@pytest.fixture(scope="module")
def processes() -> Iterator[Any]:
    """4 spawned children, reused by the module's multi-process tests."""
    pool = spawn_pool(4)
    yield pool
    pool.close()
    pool.join()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fixed_window", "quota"])
def test_processes_admit_exactly_the_limit(processes: Any, store_url: str, name: str) -> None:
    """4 processes x 8 threads x 250 attempts at 500 per day on one key admit exactly 500."""
    plan = Plan("default", 500, 86_400)
    job = (store_url, name, f"limify:multiprocess:{uuid.uuid4().hex}", plan, NOW_US, THREADS, ATTEMPTS)
    admitted = processes.starmap(attempt_from_threads, [job] * 4, chunksize=1)
    assert sum(admitted) == plan.limit, admitted


def test_memcached_refuses_a_global_limit_beside_per_key_limits(memcached_url: str) -> None:
    """On memcached:// a GlobalLimit beside per-key limits is refused where it is declared, naming the fix."""
    with pytest.raises(ValueError, match="GlobalLimit") as refused:

        @rate_limit(["2/hour", GlobalLimit("3/hour")], storage=memcached_url, key="user")
        def call(user: str) -> None: ...

    assert "decorator of its own" in str(refused.value)

    @rate_limit(["2/hour", "5/day"], storage=memcached_url, key="user", name=f"ok-{uuid.uuid4().hex}")
    def per_key(user: str) -> str:
        return user

    @rate_limit(
        [GlobalLimit("2/hour"), GlobalLimit("5/day")], storage=memcached_url, name=f"g-{uuid.uuid4().hex}"
    )
    def shared_only() -> str:
        return "ok"

    assert [per_key("a"), per_key("a"), per_key("b")] == ["a", "a", "b"]
    with pytest.raises(RateLimitExceeded):
        per_key("a")
    assert [shared_only(), shared_only()] == ["ok", "ok"]
    with pytest.raises(RateLimitExceeded):
        shared_only()
