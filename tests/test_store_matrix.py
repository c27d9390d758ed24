"""The storage matrix on PostgreSQL and Memcached: every algorithm decides as in memory.

The same calls (one key or a compound of two, consume, peek and refunds naming
their call, random gaps on one ManualClock) run on an InMemoryAdapter and on the
store under test, from sync and from async code; every outcome must be the same.
The stores keep each state as its codec's text and run the Python transition on
it, so anything but equality is a store that lost, mixed up or half-saved a state.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms.base import CONSUME, PEEK, REFUND, AlgorithmSpec, Outcome
from limify.core.check import Check
from limify.core.memcached_adapter import MemcachedAsyncAdapter, MemcachedSyncAdapter
from limify.core.postgres_adapter import PostgresAsyncAdapter, PostgresSyncAdapter
from tests.histories import SPECS, each_spec, give_back_token

PLANS = (Plan("short", 3, 10), Plan("long", 5, 60))
CALLS = 80


def calls(spec: AlgorithmSpec, seed: int) -> Iterator[tuple[int, tuple[str, ...], int, str, str]]:
    """``(gap_us, keys, cost, mode, token)`` of a reproducible mix of calls (refunds name earlier ones)."""
    rng = random.Random(f"{spec.name}:{seed}")
    admitted: list[tuple[tuple[str, ...], int, str]] = []
    for index in range(CALLS):
        keys = rng.choice([("a",), ("b",), ("a2", "b2")])
        mode = rng.choices([CONSUME, PEEK, REFUND], [6, 2, 2])[0]
        cost = rng.randint(1, 3)
        gap = rng.choice([0, 0, 1, 999_999, 2_000_000, 7_000_000, 61_000_000])
        token = f"call{index}"
        if mode == REFUND and admitted:
            keys, cost, token = admitted.pop(rng.randrange(len(admitted)))
        yield gap, keys, cost, mode, token
        if mode == CONSUME:
            admitted.append((keys, cost, token))


def check_of(
    spec: AlgorithmSpec, prefix: str, keys: tuple[str, ...], cost: int, mode: str, token: str
) -> Check:
    """The Check of one call, its keys under ``prefix`` so that runs never meet."""
    return Check(spec, tuple(prefix + key for key in keys), PLANS[: len(keys)], cost, mode, token)


def replay(spec: AlgorithmSpec, clock: ManualClock, seed: int, expected: list[Outcome]) -> Iterator[Check]:
    """The Check of each call of ``calls(spec, seed)`` for the store to run; what memory
    decides for each is appended to ``expected``."""
    memory, prefix = InMemoryAdapter(clock=clock), f"limify:matrix:{uuid.uuid4().hex}:"
    consumed: dict[str, int] = {}
    for gap, keys, cost, mode, token in calls(spec, seed):
        clock.advance(us=gap)
        if mode == REFUND:
            token = give_back_token(spec, consumed.get(token, clock.now_us()), token)
        check = check_of(spec, prefix, keys, cost, mode, token)
        yield check
        expected.append(memory.execute(check))
        if mode == CONSUME:
            consumed[token] = expected[-1].now_us


def replay_sync(spec: AlgorithmSpec, store: Any, clock: ManualClock) -> list[tuple[Outcome, Outcome]]:
    """Every call on ``store`` and on memory, side by side."""
    got: list[Outcome] = []
    expected: list[Outcome] = []
    for check in replay(spec, clock, 1, expected):
        got.append(store.execute(check))
    return list(zip(got, expected))


async def replay_async(spec: AlgorithmSpec, store: Any, clock: ManualClock) -> list[tuple[Outcome, Outcome]]:
    """:func:`replay_sync` through the async adapter (other calls)."""
    got: list[Outcome] = []
    expected: list[Outcome] = []
    for check in replay(spec, clock, 2, expected):
        got.append(await store.execute_async(check))
    return list(zip(got, expected))


@pytest.fixture(params=["postgres", "memcached"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of each store under test (the session's private servers)."""
    return str(
        request.getfixturevalue("postgres_server_url" if request.param == "postgres" else "memcached_url")
    )


def sync_store(url: str, clock: ManualClock) -> Any:
    """The sync adapter of ``url`` on ``clock``."""
    if url.startswith("memcached"):
        return MemcachedSyncAdapter.from_url(url, clock=clock)
    return PostgresSyncAdapter.from_url(url, clock=clock)


@each_spec
def test_sync_adapters_decide_as_memory_does(spec: AlgorithmSpec, store_url: str, clock: ManualClock) -> None:
    """Each algorithm on PostgreSQL and Memcached, from sync code: every outcome equals the in-memory one."""
    store = sync_store(store_url, clock)
    try:
        pairs = replay_sync(spec, store, clock)
    finally:
        store.close()
    assert [got for got, _ in pairs] == [expected for _, expected in pairs]
    assert any(got.allowed for got, _ in pairs) and not all(got.allowed for got, _ in pairs)


@pytest.mark.anyio
@each_spec
@pytest.mark.parametrize(
    ("store", "anyio_backend"), [("postgres", "asyncio"), ("memcached", "asyncio"), ("memcached", "trio")]
)
async def test_async_adapters_decide_as_memory_does(
    spec: AlgorithmSpec, store: str, clock: ManualClock, request: pytest.FixtureRequest
) -> None:
    """Each algorithm on PostgreSQL (asyncio) and Memcached (asyncio, trio), from async code: the in-memory outcomes."""
    adapter: Any
    if store == "postgres":
        adapter = PostgresAsyncAdapter.from_url(request.getfixturevalue("postgres_server_url"), clock=clock)
    else:
        adapter = MemcachedAsyncAdapter.from_url(request.getfixturevalue("memcached_url"), clock=clock)
    try:
        pairs = await replay_async(spec, adapter, clock)
    finally:
        await adapter.close()
    assert [got for got, _ in pairs] == [expected for _, expected in pairs]


@pytest.mark.parametrize("spec", SPECS[:1], ids=lambda spec: spec.name)
def test_sync_and_async_adapters_share_state(spec: AlgorithmSpec, store_url: str, clock: ManualClock) -> None:
    """A state the sync adapter saved is the one the async adapter decides on (and the other way)."""
    import anyio

    plan, key = Plan("default", 2, 60), f"limify:shared:{uuid.uuid4().hex}"
    synchronous = sync_store(store_url, clock)
    check = Check(spec, (key,), (plan,), 1)

    async def from_async() -> tuple[bool, bool]:
        cls: Any = MemcachedAsyncAdapter if store_url.startswith("memcached") else PostgresAsyncAdapter
        adapter = cls.from_url(store_url, clock=clock)
        try:
            second = await adapter.execute_async(check)
            third = await adapter.execute_async(check)
        finally:
            await adapter.close()
        return second.allowed, third.allowed

    try:
        assert synchronous.execute(check).allowed
        assert anyio.run(from_async) == (True, False)
        assert not synchronous.execute(check._replace(mode=PEEK)).allowed
        synchronous.clear([key])
        assert synchronous.execute(check).remaining == 1
    finally:
        synchronous.close()
