"""The child side of the multi-process exactness tests (imported by spawned processes).

Kept apart from the test module so that a child imports only Limify and redis.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

from limify import ManualClock, Plan
from limify.core.algorithms import ALGORITHMS
from limify.core.algorithms.base import CONSUME
from limify.core.redis_adapter import RedisSyncAdapter

_barrier: Any = None


def remember_barrier(barrier: Any) -> None:
    """Pool initializer: the barrier every child waits at before attempting."""
    global _barrier
    _barrier = barrier


def sync_adapter(url: str, clock: ManualClock) -> Any:
    """The sync adapter a storage URL names (Redis, PostgreSQL or Memcached), on ``clock``."""
    if url.startswith("memcached://"):
        from limify.core.memcached_adapter import MemcachedSyncAdapter

        return MemcachedSyncAdapter.from_url(url, clock=clock)
    if url.startswith(("postgresql://", "postgres://")):
        from limify.core.postgres_adapter import PostgresSyncAdapter

        return PostgresSyncAdapter.from_url(url, clock=clock)
    return RedisSyncAdapter.from_url(url, clock=clock)


def attempt_from_threads(
    url: str, algorithm: str, key: str, plan: Plan, now_us: int, threads: int, attempts: int
) -> int:
    """A client for ``url``; ``threads`` threads x ``attempts`` attempts; how many were admitted.

    Every attempt uses its own token (a concurrency limit counts each as a lease,
    never released), and the clock is pinned at ``now_us``, the same in every
    process, so that nothing refills or rolls over during the run.
    """
    adapter = sync_adapter(url, ManualClock(now_us))
    shell = ALGORITHMS[algorithm][0](adapter)
    admitted = [0] * threads
    start = threading.Barrier(threads)

    def worker(index: int) -> None:
        start.wait()
        prefix = f"{os.getpid()}-{index}-"
        admitted[index] = sum(
            shell.check_all([key], [plan], 1, CONSUME, f"{prefix}{attempt}").allowed
            for attempt in range(attempts)
        )

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    shell.peek(key, plan)  # connect (and, on a cluster, learn the slots) before the race starts
    if _barrier is not None:
        _barrier.wait(60)  # every process starts at once
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    adapter.close()
    return sum(admitted)


def spawn_pool(processes: int) -> Any:
    """A pool of ``processes`` spawned children sharing one start barrier.

    A child blocks at the barrier inside its job until all have arrived, so a
    batch of exactly ``processes`` jobs always runs one job per child, at once.
    """
    context = multiprocessing.get_context("spawn")
    return context.Pool(processes, initializer=remember_barrier, initargs=(context.Barrier(processes),))
