"""Every algorithm on every topology: standalone, Sentinel and a 3-master Cluster, sync and async.

Each case replays one fixed sequence of checks, peeks, refunds and resets, with
single and compound (per-key + global) limits, through the in-memory adapter and
through the topology on one manual clock: the decisions must be identical.
"""

from __future__ import annotations

import inspect
import random
import zlib
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms import ALGORITHMS
from limify.core.algorithms.base import CONSUME, PEEK, REFUND
from limify.core.keys import limit_keys
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.servers import SentinelServers

PLANS = (Plan("p", 5, 2), Plan("q", 12, 60))
TOPOLOGIES = ["standalone", "sentinel", "cluster"]


def scenario(seed: int) -> Iterator[tuple[str, tuple[str, ...], tuple[Plan, ...], int, str, int]]:
    """(op, keys, plans, cost, token, µs to advance first) steps: single and compound, several users."""
    rng = random.Random(seed)
    for step in range(60):
        user = rng.choice(["u1", "u2", "u:{3}"])
        compound = step % 3 == 0
        plans = PLANS if compound else PLANS[:1]
        shared = (False, True) if compound else (False,)
        keys = limit_keys(f"matrix{seed}", [p.id for p in plans], [p.period_us for p in plans], shared, user)
        op = rng.choice([CONSUME, CONSUME, CONSUME, PEEK, REFUND, "reset"])
        yield (
            op,
            keys,
            plans,
            rng.randint(1, 3),
            rng.choice(["t1", "t2", "t3"]),
            rng.choice([0, 1_000, 400_000]),
        )


def url_for(topology: str, request: pytest.FixtureRequest) -> str:
    if topology == "standalone":
        return str(request.getfixturevalue("redis_url"))
    if topology == "sentinel":
        servers: SentinelServers = request.getfixturevalue("sentinel_servers")
        return servers.url
    return str(request.getfixturevalue("cluster_url"))


async def settled(value: Any) -> Any:
    """A sync shell's answer as it is, an async shell's awaited."""
    return await value if inspect.isawaitable(value) else value


async def run_scenario(shell: Any, clock: ManualClock, seed: int) -> list[Any]:
    """The outcomes of ``scenario(seed)`` on a shell, sync or async, whose store runs on ``clock``."""
    outcomes: list[Any] = []
    for op, keys, plans, cost, token, advance in scenario(seed):
        clock.advance(us=advance)
        if op == "reset":
            await settled(shell.reset_all(keys))
            outcomes.append(None)
        else:
            outcomes.append(await settled(shell.check_all(keys, plans, cost, op, token)))
    return outcomes


def expected_outcomes(name: str, seed: int) -> list[Any]:
    """What the in-memory adapter decides for ``scenario(seed)``."""
    clock = ManualClock()
    return anyio.run(run_scenario, ALGORITHMS[name][0](InMemoryAdapter(clock=clock)), clock, seed)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_sync_algorithm_matches_memory_on_topology(
    topology: str, name: str, request: pytest.FixtureRequest
) -> None:
    """The sync shell on this topology decides exactly like the in-memory adapter."""
    seed = zlib.crc32(f"{topology}-{name}-sync".encode()) % 10_000
    clock = ManualClock()
    adapter = RedisSyncAdapter.from_url(url_for(topology, request), clock=clock)
    actual = anyio.run(run_scenario, ALGORITHMS[name][0](adapter), clock, seed)
    adapter.close()
    assert actual == expected_outcomes(name, seed)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_async_algorithm_matches_memory_on_topology(
    topology: str, name: str, request: pytest.FixtureRequest
) -> None:
    """The async shell (redis.asyncio) on this topology decides exactly like the in-memory adapter."""
    seed = zlib.crc32(f"{topology}-{name}-async".encode()) % 10_000
    url = url_for(topology, request)

    async def replay() -> list[Any]:
        clock = ManualClock()
        return await run_scenario(
            ALGORITHMS[name][1](RedisAsyncAdapter.from_url(url, clock=clock)), clock, seed
        )

    assert anyio.run(replay) == expected_outcomes(name, seed)
