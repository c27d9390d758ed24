"""Exactness across processes: 4 processes x 8 threads x 1000 attempts at limit 500 on one key.

Each spawned process builds its own client from the storage URL, as separate
application servers would; all of them start at one barrier. Every algorithm
of the registry runs with a pinned clock (the same instant in every process)
and, for the concurrency limit, leases that are never released, so that no
algorithm refills during the run: exactly 500 attempts may be admitted, on a
standalone server and on a 3-master Cluster alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from limify import Plan
from limify.core.algorithms import ALGORITHMS
from tests.exactness_worker import attempt_from_threads, spawn_pool

pytestmark = pytest.mark.slow

PROCESSES, THREADS, ATTEMPTS = 4, 8, 1000
PLAN = Plan("default", 500, 86_400)
NOW_US = 1_700_000_000_000_000


@pytest.fixture(scope="module")
def processes() -> Iterator[Any]:
    """PROCESSES spawned children, reused by every test of the module."""
    pool = spawn_pool(PROCESSES)
    yield pool
    pool.close()
    pool.join()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_processes_admit_exactly_the_limit(
    processes: Any, topology: str, name: str, request: pytest.FixtureRequest
) -> None:
    """4 processes x 8 threads x 1000 attempts at 500 per day on one key admit exactly 500."""
    url = request.getfixturevalue("redis_url" if topology == "standalone" else "cluster_url")
    job = (url, name, f"limify:multiprocess-{name}:{PLAN.id}", PLAN, NOW_US, THREADS, ATTEMPTS)
    admitted = processes.starmap(attempt_from_threads, [job] * PROCESSES, chunksize=1)
    assert sum(admitted) == PLAN.limit, admitted
