"""Redis Cluster resharding under load: the slot of a limit moves to another master while callers run.

The slot is migrated as ``redis-cli --cluster reshard`` does it (IMPORTING and
MIGRATING, MIGRATE in small batches, then SETSLOT NODE on every master), with
pauses, so callers meet every redirection of a half-moved slot: ASK for keys
already moved, TRYAGAIN for a compound limit whose keys are split between the
two masters, then MOVED once the slot has changed hands. The limits have a
``GlobalLimit`` (keys ``limify:{<name>}:...``), which pins all their keys, and
every new caller's, to one slot.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from limify import GlobalLimit, ManualClock, Plan, StorageError, rate_limit
from limify.core.algorithms import ALGORITHMS
from limify.core.algorithms.base import CONSUME
from limify.core.keys import limit_keys
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from tests.load import TaskLoad, ThreadLoad
from tests.servers import RedisClusterServers

PER_USER, SHARED = Plan("user", 3, 86_400), Plan("all", 1_000_000, 86_400)
ATTEMPTS_PER_USER = 4  # one more than PER_USER admits: each caller is refused exactly once
MIGRATION = {"batch": 5, "pause": 0.05}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    """A private 3-master cluster whose slots these tests move around."""
    servers = RedisClusterServers().start()
    yield servers
    servers.stop()


def slot_of(scope: str) -> int:
    """The slot of every key of a limit with a GlobalLimit named ``scope``."""
    return key_slot(limit_keys(scope, ["a", "b"], [1, 1], [False, True], "x")[0].encode())


def keys_for(scope: str, user: int) -> tuple[str, ...]:
    return limit_keys(
        scope, [PER_USER.id, SHARED.id], [PER_USER.period_us, SHARED.period_us], [False, True], str(user)
    )


class ExactnessLedger:
    """Attempts and admissions per caller; each caller is tried ATTEMPTS_PER_USER times, from any thread."""

    def __init__(self) -> None:
        self.counter = itertools.count()
        self.lock = threading.Lock()
        self.attempts: Counter[int] = Counter()
        self.admitted: Counter[int] = Counter()

    def next_attempt(self) -> tuple[int, str]:
        index = next(self.counter)
        return index // ATTEMPTS_PER_USER, f"lease-{index}"

    def record(self, user: int, allowed: bool) -> str:
        with self.lock:
            self.attempts[user] += 1
            self.admitted[user] += allowed
        return "ok" if allowed else "refused"

    def assert_exact(self) -> int:
        """Every caller got min(attempts, limit) admissions; return the total admitted."""
        wrong = {
            user: (self.admitted[user], self.attempts[user])
            for user in self.attempts
            if self.admitted[user] != min(self.attempts[user], PER_USER.limit)
        }
        assert not wrong, f"(admitted, attempts) off the limit for callers {wrong}"
        return sum(self.admitted.values())


def test_decorated_calls_see_no_error_while_the_slot_moves(cluster: RedisClusterServers) -> None:
    """Threads calling a compound limit (new callers each time) never see MOVED/ASK/TRYAGAIN."""
    scope = "migrating-threads"

    @rate_limit(
        ["1000000/second", GlobalLimit("1000000/second")], key="user", storage=cluster.url, name=scope
    )
    def call(user: int) -> None:
        return None

    users = itertools.count()

    def attempt() -> str:
        call(next(users))
        return "ok"

    with ThreadLoad(attempt) as load:
        load.wait_for_calls(200)
        source, target = cluster.migrate_slot(slot_of(scope), **MIGRATION)
        load.wait_for_calls(200)
    assert cluster.slot_owner(slot_of(scope)) == target != source
    assert set(load.outcomes) == {"ok"}, load.outcomes


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_decisions_stay_exact_while_the_slot_moves(cluster: RedisClusterServers, name: str) -> None:
    """Pinned clock, threads, new callers throughout: every limit admits exactly its limit across the move."""
    scope = f"exact-{name}"
    adapter = RedisSyncAdapter.from_url(cluster.url, clock=ManualClock())
    shell = ALGORITHMS[name][0](adapter)
    ledger = ExactnessLedger()

    # run() skips the declaration-time checks: the shared plan is far above the sliding
    # log's MAX_LOG_LIMIT, so that no load this test can produce exhausts it.
    def attempt() -> str:
        user, token = ledger.next_attempt()
        allowed = shell.run(keys_for(scope, user), (PER_USER, SHARED), 1, CONSUME, token)[0]
        return ledger.record(user, allowed)

    with ThreadLoad(attempt) as load:
        load.wait_for_calls(150)
        cluster.migrate_slot(slot_of(scope), **MIGRATION)
        load.wait_for_calls(150)
    assert set(load.outcomes) == {"ok", "refused"}, load.outcomes
    admitted = ledger.assert_exact()
    # The shared limit lost no admission and counted none twice: exactly what is left still fits.
    shared_key = keys_for(scope, -1)[1]
    assert shell.run([shared_key], [SHARED], SHARED.limit - admitted, CONSUME, "rest")[0]
    assert not shell.run([shared_key], [SHARED], 1, CONSUME, "one-more")[0]
    adapter.close()


def test_asyncio_tasks_stay_exact_while_the_slot_moves(cluster: RedisClusterServers) -> None:
    """50 asyncio tasks on redis.asyncio's cluster client: no error, exact decisions across the move."""
    scope = "exact-asyncio"
    ledger = ExactnessLedger()

    async def main() -> None:
        adapter = RedisAsyncAdapter.from_url(cluster.url, clock=ManualClock())
        shell = ALGORITHMS["token_bucket"][1](adapter)

        async def attempt() -> str:
            user, token = ledger.next_attempt()
            result = await shell.check_all(keys_for(scope, user), (PER_USER, SHARED), 1, CONSUME, token)
            return ledger.record(user, result.allowed)

        async with TaskLoad(attempt) as load:
            await load.wait_for_calls_async(150)
            await asyncio.to_thread(cluster.migrate_slot, slot_of(scope), **MIGRATION)
            await load.wait_for_calls_async(150)
        assert set(load.outcomes) == {"ok", "refused"}, load.outcomes
        admitted = ledger.assert_exact()
        shared_key = keys_for(scope, -1)[1]
        assert (
            await shell.check_all([shared_key], [SHARED], SHARED.limit - admitted, CONSUME, "rest")
        ).allowed
        assert not (await shell.check_all([shared_key], [SHARED], 1, CONSUME, "one-more")).allowed

    asyncio.run(main())


def test_a_slot_left_half_migrated_becomes_a_storage_error(cluster: RedisClusterServers) -> None:
    """A migration stalled with a compound limit's keys split: StorageError after a wait, then recovery."""
    scope = "stalled"
    adapter = RedisSyncAdapter.from_url(cluster.url, clock=ManualClock())
    adapter.resharding_wait = 0.3
    shell = ALGORITHMS["token_bucket"][0](adapter)
    keys = keys_for(scope, 1)
    assert shell.check_all(keys, (PER_USER, SHARED)).allowed
    migration = cluster.begin_migration(slot_of(scope))
    migration.move([keys[1]])  # the shared key moves, the caller's stays behind: TRYAGAIN
    started = time.monotonic()
    with pytest.raises(StorageError, match="still being migrated"):
        shell.check_all(keys, (PER_USER, SHARED))
    assert time.monotonic() - started < 0.3 + 1.5  # our wait, plus the client's own retries
    migration.move_all()
    migration.finish()
    assert shell.check_all(keys, (PER_USER, SHARED)).remaining == PER_USER.limit - 2
    adapter.close()
