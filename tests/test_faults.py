"""Fault injection against real redis-server processes: kills, restarts, script flushes.

Real time is the point here (a server dies while callers run), so these tests
run bounded loads for a second or two each.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from limify import RateLimitExceeded, StorageError, rate_limit
from tests.servers import RedisServer

# Socket timeouts in the URL keep a dead server from stalling anyone for long.
TIMEOUTS = "?socket_timeout=0.5&socket_connect_timeout=0.5"
MARGIN = 1.5  # seconds on top of the socket timeout that a call may take while the server dies


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private redis-server this test may kill and restart."""
    own = RedisServer().start()
    yield own
    own.stop()


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
    server: RedisServer, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed mid-load: calls keep returning fast with the policy's answer; a restart resumes traffic."""
    caplog.set_level(logging.WARNING, logger="limify")

    @rate_limit(
        "1000000/second", storage=server.url + TIMEOUTS, on_storage_error=policy, name=f"kill-{policy}"
    )
    def call() -> None:
        return None

    before, _ = run_threads(call, 0.3)
    assert set(before) == {"ok"}
    server.kill()
    during, slowest = run_threads(call, 1.0)
    expected = {"storage_error"} if policy == "fail_closed" else {"ok"}
    assert set(during) == expected, during
    assert slowest < 0.5 + MARGIN
    switches = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(switches) == 1  # logged once, not per call
    server.restart()
    deadline = time.monotonic() + 10
    client = redis.Redis.from_url(server.url)
    while time.monotonic() < deadline and not client.keys("limify:*"):
        run_threads(call, 0.2, threads=1)
    assert client.keys("limify:*"), "traffic did not return to the restarted server"
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    client.close()


def test_local_policy_keeps_limiting_in_process(server: RedisServer) -> None:
    """Under 'local', an outage switches to an in-memory limiter that still enforces the rate."""

    @rate_limit("3/hour", storage=server.url + TIMEOUTS, on_storage_error="local", name="local")
    def call() -> None:
        return None

    server.kill()
    call()
    call()
    call()
    with pytest.raises(RateLimitExceeded):
        call()


def test_script_flush_mid_load_never_reaches_callers(server: RedisServer) -> None:
    """SCRIPT FLUSH while threads call: NOSCRIPT is handled inside the adapter."""

    @rate_limit("1000000/second", storage=server.url, name="flush")
    def call() -> None:
        return None

    client = redis.Redis.from_url(server.url)
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


def test_asyncio_tasks_survive_a_kill(server: RedisServer) -> None:
    """100 asyncio tasks under fail_open: a killed server turns into admissions, never errors or hangs."""

    @rate_limit(
        "1000000/second", storage=server.url + TIMEOUTS, on_storage_error="fail_open", name="async-kill"
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
            await asyncio.to_thread(server.kill)

        await asyncio.gather(killer(), *(worker() for _ in range(100)))
        return outcomes, slowest

    outcomes, slowest = asyncio.run(main())
    assert set(outcomes) == {"ok"}, outcomes
    assert slowest < 0.5 + MARGIN
