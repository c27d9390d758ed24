"""Faults on PostgreSQL and Memcached: the server SIGKILLed mid-load, then restarted.

Every call returns within the store's timeout plus a margin, with its failure
policy's answer, while the server is dead; once it is back, checks reach it again
without restarting anything. Real time is the point here, as in tests/test_faults.py.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg
import pytest

from limify import RateLimitExceeded, StorageError, rate_limit
from tests.store_servers import MemcachedServer, PostgresServer
from tests.test_faults import MARGIN, run_threads

TIMEOUT = 0.5


@pytest.fixture
def doomed_postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL of this test's own, which it may kill and restart."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def doomed_memcached() -> Iterator[MemcachedServer]:
    """A private memcached of this test's own, which it may kill and restart."""
    server = MemcachedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["postgres", "memcached"])
def doomed(request: pytest.FixtureRequest) -> Any:
    """Each store's doomed server."""
    return request.getfixturevalue(f"doomed_{request.param}")


def held_states(server: Any) -> int:
    """How many states the server holds (rows, or memcached items)."""
    if isinstance(server, PostgresServer):
        with psycopg.connect(server.url) as conn:
            return int(conn.execute("SELECT count(*) FROM limify_state").fetchone()[0])  # type: ignore[index]
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            reply += sock.recv(65536)
    stats = dict(line.split()[1:3] for line in reply.decode().splitlines() if line.startswith("STAT "))
    return int(stats["curr_items"])


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["fail_open", "fail_closed", "local"])
def test_sigkill_under_load_then_restart(doomed: Any, policy: str, caplog: pytest.LogCaptureFixture) -> None:
    """Killed mid-load: calls return within the timeout + a margin with the policy's answer; a restart resumes."""
    caplog.set_level(logging.WARNING, logger="limify")

    @rate_limit(
        "1000000/second", storage=f"{doomed.url}?timeout={TIMEOUT}", on_storage_error=policy,
        name=f"kill-{policy}-{uuid.uuid4().hex}", key="who",
    )  # fmt: skip
    def call(who: str = "a") -> None:
        return None

    before, _ = run_threads(call, 0.3)
    assert set(before) == {"ok"}
    doomed.kill()
    during, slowest = run_threads(call, 1.0)
    assert set(during) == ({"storage_error"} if policy == "fail_closed" else {"ok"}), during
    assert slowest < TIMEOUT + MARGIN
    doomed.restart()
    back = lambda: any("reachable again" in record.getMessage() for record in caplog.records)  # noqa: E731
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not back():
        run_threads(lambda: call(uuid.uuid4().hex), 0.2, threads=1)
    assert back(), "checks did not return"

    @rate_limit(
        "1/hour", storage=f"{doomed.url}?timeout={TIMEOUT}", on_storage_error=policy, name=uuid.uuid4().hex
    )
    def once() -> None:
        return None

    once()
    with pytest.raises(RateLimitExceeded):
        once()  # the same process's clients, on the restarted server: limits hold again
    assert held_states(doomed) >= 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("store", "anyio_backend"), [("postgres", "asyncio"), ("memcached", "asyncio"), ("memcached", "trio")]
)
async def test_async_calls_survive_a_kill(store: str, request: pytest.FixtureRequest) -> None:
    """50 tasks under fail_open on a killed server: admissions within the timeout, then limits again after restart."""
    server = request.getfixturevalue(f"doomed_{store}")

    @rate_limit("2/hour", storage=f"{server.url}?timeout={TIMEOUT}", on_storage_error="fail_open", key="who")
    async def call(who: str) -> str:
        return who

    assert await call("a") == "a"
    server.kill()
    started = time.monotonic()
    async with anyio.create_task_group() as tasks:
        for index in range(50):
            tasks.start_soon(call, str(index))
    assert time.monotonic() - started < TIMEOUT + MARGIN
    server.restart()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            await call("b")
            await call("b")
            await call("b")  # admitted by fail_open until the store answers again
        except RateLimitExceeded:
            break
        await anyio.sleep(0.2)
    else:
        pytest.fail("limits did not come back after the restart")


def test_fail_closed_raises_storage_error_on_a_dead_server(doomed: Any) -> None:
    """With the server gone, fail_closed raises StorageError (never hangs, never a driver exception)."""

    @rate_limit(
        "5/hour",
        storage=f"{doomed.url}?timeout={TIMEOUT}",
        on_storage_error="fail_closed",
        name=uuid.uuid4().hex,
    )
    def call() -> None:
        return None

    doomed.kill()
    started = time.monotonic()
    with pytest.raises(StorageError):
        call()
    assert time.monotonic() - started < TIMEOUT + MARGIN
