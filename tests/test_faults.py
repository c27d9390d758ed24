"""Fault injection against real redis-server processes: kills, freezes, restarts, script flushes.

Real time is the point here (a server dies while callers run), so these tests
run bounded loads for a second or two each.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter

import pytest
import redis

from limify import Plan, RateLimitExceeded, StorageError, rate_limit
from limify.core.algorithms.token_bucket import TokenBucketAlgorithm
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from limify.core.resilience import GuardedStorage
from tests.frozen import frozen
from tests.servers import RedisServer

# Socket timeouts in the URL keep a dead server from stalling anyone for long.
TIMEOUTS = "?socket_timeout=0.5&socket_connect_timeout=0.5"
MARGIN = 1.5  # seconds on top of the socket timeout that a call may take while the server dies


def run_threads(call: object, seconds: float, threads: int = 4) -> tuple[Counter[str], float]:
    """Call `call` from several threads for `seconds`; count outcomes, track the slowest call."""
    outcomes: Counter[str] = Counter()
    slowest = [0.0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                call()  # type: ignore[operator]
                outcome = "ok"
            except RateLimitExceeded:
                outcome = "refused"
            except StorageError:
                outcome = "storage_error"
            except Exception as exc:  # anything else is a failure of the test
                outcome = f"unexpected {type(exc).__name__}: {exc}"
            took = time.monotonic() - started
            with lock:
                outcomes[outcome] += 1
                slowest[0] = max(slowest[0], took)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return outcomes, slowest[0]


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed", "local"])
def test_sigkill_under_load_then_restart(
    doomed_redis: RedisServer, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed mid-load: calls keep returning fast with the policy's answer; a restart resumes traffic."""
    caplog.set_level(logging.WARNING, logger="limify")

    @rate_limit(
        "1000000/second", storage=doomed_redis.url + TIMEOUTS, on_storage_error=policy, name=f"kill-{policy}"
    )
    def call() -> None:
        return None

    before, _ = run_threads(call, 0.3)
    assert set(before) == {"ok"}
    doomed_redis.kill()
    during, slowest = run_threads(call, 1.0)
    expected = {"storage_error"} if policy == "fail_closed" else {"ok"}
    assert set(during) == expected, during
    assert slowest < 0.5 + MARGIN
    switches = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(switches) == 1  # logged once, not per call
    doomed_redis.restart()
    deadline = time.monotonic() + 10
    client = redis.Redis.from_url(doomed_redis.url)
    while time.monotonic() < deadline and not client.keys("limify:*"):
        run_threads(call, 0.2, threads=1)
    assert client.keys("limify:*"), "traffic did not return to the restarted server"
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    client.close()


def test_local_policy_keeps_limiting_in_process(doomed_redis: RedisServer) -> None:
    """Under 'local', an outage switches to an in-memory limiter that still enforces the rate."""

    @rate_limit("3/hour", storage=doomed_redis.url + TIMEOUTS, on_storage_error="local", name="local")
    def call() -> None:
        return None

    doomed_redis.kill()
    call()
    call()
    call()
    with pytest.raises(RateLimitExceeded):
        call()


def test_script_flush_mid_load_never_reaches_callers(doomed_redis: RedisServer) -> None:
    """SCRIPT FLUSH while threads call: NOSCRIPT is handled inside the adapter."""

    @rate_limit("1000000/second", storage=doomed_redis.url, name="flush")
    def call() -> None:
        return None

    client = redis.Redis.from_url(doomed_redis.url)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            client.script_flush()
            time.sleep(0.005)

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        outcomes, _ = run_threads(call, 1.0)
    finally:
        stop.set()
        thread.join()
        client.close()
    assert set(outcomes) == {"ok"}, outcomes


def test_asyncio_tasks_survive_a_kill(doomed_redis: RedisServer) -> None:
    """100 asyncio tasks under fail_open: a killed server turns into admissions, never errors or hangs."""

    @rate_limit(
        "1000000/second", storage=doomed_redis.url + TIMEOUTS, on_storage_error="fail_open", name="async-kill"
    )
    async def call() -> None:
        return None

    async def main() -> tuple[Counter[str], float]:
        outcomes: Counter[str] = Counter()
        slowest = 0.0
        deadline = time.monotonic() + 1.5

        async def worker() -> None:
            nonlocal slowest
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    await call()
                    outcomes["ok"] += 1
                except Exception as exc:
                    outcomes[f"unexpected {type(exc).__name__}"] += 1
                slowest = max(slowest, time.monotonic() - started)
                await asyncio.sleep(0)

        async def killer() -> None:
            await asyncio.sleep(0.4)
            await asyncio.to_thread(doomed_redis.kill)

        await asyncio.gather(killer(), *(worker() for _ in range(100)))
        return outcomes, slowest

    outcomes, slowest = asyncio.run(main())
    assert set(outcomes) == {"ok"}, outcomes
    assert slowest < 0.5 + MARGIN


# A stopped server (SIGSTOP) answers nothing, and nothing fails until a socket times out.
FROZEN_TIMEOUT = 1.0
FROZEN_URL_OPTIONS = f"?socket_timeout={FROZEN_TIMEOUT}&socket_connect_timeout={FROZEN_TIMEOUT}"
FROZEN_MARGIN = 0.5  # less than one more timeout: a call that waits two of them is caught
SLOW = 0.5 * FROZEN_TIMEOUT  # a call this slow waited on the server; fallback answers are instant
FIRST_BACKOFF = 0.3
# Long enough for the first calls to time out, the backoff to pass and one probe to start.
FROZEN_RUN = FROZEN_TIMEOUT + 2 * FIRST_BACKOFF


def probes_after_the_first_failure(calls: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (start, end) of the slow calls begun after the first one failed, in start order.

    The first calls made on a frozen server all wait for their timeout (no failure is
    known yet); every slow call after that is a probe of the failed storage.
    """
    slow = sorted((start, start + took) for start, took in calls if took >= SLOW)
    assert slow, "no call waited on the frozen server"
    first_failure = min(end for _, end in slow)
    return [(start, end) for start, end in slow if start >= first_failure]


def assert_one_at_a_time(probes: list[tuple[float, float]]) -> None:
    """Each probe starts after the previous one ended."""
    for (_, previous_end), (start, _) in zip(probes, probes[1:]):
        assert start >= previous_end, f"two callers waited on the failed storage at once: {probes}"


def test_one_thread_at_a_time_waits_on_a_frozen_server(doomed_redis: RedisServer) -> None:
    """20 threads, fail_open, a stopped server: one call per backoff window waits (the probe), others don't.

    After the first timeout, each backoff window lets one call wait on the server; every
    other call is answered at once.
    """
    adapter = RedisSyncAdapter.from_url(doomed_redis.url + FROZEN_URL_OPTIONS)
    algorithm = TokenBucketAlgorithm(GuardedStorage(adapter, "fail_open", first_backoff=FIRST_BACKOFF))
    plan = Plan("p", 1_000_000, 1)
    algorithm.check("k", plan)  # connects and loads the script while the server answers
    calls: list[tuple[float, float]] = []
    lock = threading.Lock()

    def worker(deadline: float) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert algorithm.check("k", plan).allowed
            with lock:
                calls.append((started, time.monotonic() - started))
            time.sleep(0.002)

    with frozen(doomed_redis):
        deadline = time.monotonic() + FROZEN_RUN
        pool = [threading.Thread(target=worker, args=(deadline,)) for _ in range(20)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    probes = probes_after_the_first_failure(calls)
    assert probes, "the failed storage was never probed again"
    assert_one_at_a_time(probes)
    assert max(took for _, took in calls) < FROZEN_TIMEOUT + FROZEN_MARGIN


def test_frozen_server_holds_no_async_caller_longer_than_the_socket_timeout(
    doomed_redis: RedisServer,
) -> None:
    """50 asyncio tasks, fail_open, a stopped server: no call waits more than one socket timeout.

    Coalescing on: checks queued behind the round trip in flight fail with it; later, one
    task at a time probes while the others are answered at once.
    """

    adapter = RedisAsyncAdapter.from_url(doomed_redis.url + FROZEN_URL_OPTIONS)  # coalescing by default
    guard = GuardedStorage(adapter, "fail_open", first_backoff=FIRST_BACKOFF)

    @rate_limit("1000000/second", storage=guard, name="frozen")
    async def call() -> None:
        return None

    async def main() -> list[tuple[float, float]]:
        calls: list[tuple[float, float]] = []
        await call()  # connects and loads the script while the server answers

        async def worker(deadline: float) -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                await call()
                calls.append((started, time.monotonic() - started))
                await asyncio.sleep(0.002)

        with frozen(doomed_redis):
            deadline = time.monotonic() + FROZEN_RUN
            await asyncio.gather(*(worker(deadline) for _ in range(50)))
        return calls

    calls = asyncio.run(main())
    assert max(took for _, took in calls) < FROZEN_TIMEOUT + FROZEN_MARGIN
    probes = probes_after_the_first_failure(calls)
    assert probes, "the failed storage was never probed again"
    assert_one_at_a_time(probes)
