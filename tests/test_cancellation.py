"""Cancelled async calls on Redis spend only what ran: queued calls are never sent, leases come back.

The round trip in flight is held up by stopping a private redis-server
(SIGSTOP): calls made meanwhile queue in the adapter's batcher, where the test
cancels them. The server resumes before anything times out (2 s by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from limify import ManualClock, Plan, rate_limit
from limify.core.algorithms import ALGORITHMS
from limify.core.algorithms.concurrency import AsyncConcurrencyAlgorithm
from limify.core.coalescing import ScriptBatcher
from limify.core.redis_adapter import RedisAsyncAdapter
from limify.core.storage import storage_from_url
from tests.frozen import frozen
from tests.servers import RedisServer

SLOTS = Plan("default", 5, 60)


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio needs asyncio."""
    return "asyncio"


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` for up to 5 s."""
    with anyio.move_on_after(5):
        while not condition():
            await anyio.sleep(0.005)
        return
    pytest.fail(f"timed out waiting for {what}")


async def batcher_of(adapter: RedisAsyncAdapter) -> ScriptBatcher:
    """The batcher of the adapter's client on this loop (the adapter must have been used)."""
    return adapter._batchers[await adapter._client()]


async def queue_then_cancel(batcher: ScriptBatcher, calls: list[Any], cancelled: anyio.Event) -> None:
    """Start ``calls`` (awaitable factories), wait until all of them queue, cancel them."""
    queued_before = len(batcher._queue)
    async with anyio.create_task_group() as queued:
        for call in calls:
            queued.start_soon(call)
        await wait_until(lambda: len(batcher._queue) == queued_before + len(calls), "the calls to queue")
        queued.cancel_scope.cancel()
        cancelled.set()


async def cancel_behind_a_round_trip(
    server: RedisServer, batcher: ScriptBatcher, in_flight: Any, calls: list[Any]
) -> None:
    """Send ``in_flight`` to a stopped server, queue ``calls`` behind it, cancel them, resume the server."""
    async with anyio.create_task_group() as group:
        with frozen(server):
            group.start_soon(in_flight)
            await wait_until(lambda: batcher._busy, "the round trip to start")
            cancelled = anyio.Event()
            group.start_soon(queue_then_cancel, batcher, calls, cancelled)
            await cancelled.wait()


@pytest.mark.anyio
async def test_checks_cancelled_while_queued_are_never_sent(doomed_redis: RedisServer) -> None:
    """Fixed-window checks cancelled while queued behind a round trip spend nothing; the one sent counts."""
    adapter = RedisAsyncAdapter.from_url(doomed_redis.url, clock=ManualClock())
    shell = ALGORITHMS["fixed_window"][1](adapter)
    plan = Plan("default", 100, 86400)
    assert (await shell.peek("k", plan)).remaining == 99  # what a call would leave; opens the client
    batcher = await batcher_of(adapter)
    await cancel_behind_a_round_trip(
        doomed_redis, batcher, lambda: shell.check("k", plan), [lambda: shell.check("k", plan)] * 10
    )
    assert (await shell.peek("k", plan)).remaining == 98  # one call spent: the one sent
    assert batcher.batched_calls == 0  # nothing was left to send


@pytest.mark.anyio
async def test_lease_acquires_cancelled_while_queued_hold_no_slot(doomed_redis: RedisServer) -> None:
    """5 concurrency acquires cancelled while queued leave all 5 slots free (not held for the 60 s lease)."""
    adapter = RedisAsyncAdapter.from_url(doomed_redis.url, clock=ManualClock())
    limiter = AsyncConcurrencyAlgorithm(adapter)
    assert (await limiter.peek("slots", SLOTS)).allowed
    batcher = await batcher_of(adapter)
    await cancel_behind_a_round_trip(
        doomed_redis,
        batcher,
        lambda: limiter.peek("other", SLOTS),
        [lambda: limiter.acquire("slots", SLOTS)] * 5,
    )
    result, _ = await limiter.acquire("slots", SLOTS, cost=5)
    assert result.allowed


@pytest.mark.anyio
async def test_lease_acquire_cancelled_after_sending_is_released(doomed_redis: RedisServer) -> None:
    """An acquire cancelled while its EVALSHA is on the server is released: the slot is free afterwards."""
    adapter = RedisAsyncAdapter.from_url(doomed_redis.url, clock=ManualClock())
    limiter = AsyncConcurrencyAlgorithm(adapter)
    one_slot = Plan("default", 1, 60)
    assert (await limiter.peek("slots", one_slot)).allowed
    batcher = await batcher_of(adapter)
    async with anyio.create_task_group() as group:
        with frozen(doomed_redis):
            group.start_soon(limiter.acquire, "slots", one_slot)
            await wait_until(lambda: batcher._busy, "the acquire to be sent")
            await anyio.sleep(0.05)  # written to the server's socket, which holds it
            group.cancel_scope.cancel()
    assert (await limiter.acquire("slots", one_slot))[0].allowed


@pytest.mark.anyio
async def test_decorated_calls_cancelled_while_queued_hold_no_slot(doomed_redis: RedisServer) -> None:
    """@rate_limit(algorithm="concurrency"): 5 calls cancelled before their acquire went out hold no slot."""
    ran = []

    @rate_limit("5/minute", algorithm="concurrency", storage=doomed_redis.url, name="queued-cancel")
    async def export() -> None:
        ran.append(1)

    assert (await export.rate_limit.peek()).allowed
    adapter = storage_from_url(doomed_redis.url).for_async()
    batcher = await batcher_of(adapter)  # type: ignore[arg-type]
    await cancel_behind_a_round_trip(doomed_redis, batcher, export.rate_limit.peek, [export] * 5)
    assert not ran
    assert (await export.rate_limit.peek()).remaining == 4  # what one more call would leave


@pytest.mark.anyio
async def test_decorated_call_cancelled_after_its_acquire_was_sent_releases_it(
    doomed_redis: RedisServer,
) -> None:
    """A decorated concurrency call cancelled while its acquire is on the server gives the slot back."""
    ran = []

    @rate_limit("1/minute", algorithm="concurrency", storage=doomed_redis.url, name="sent-cancel")
    async def export() -> None:
        ran.append(1)

    assert (await export.rate_limit.peek()).allowed
    adapter = storage_from_url(doomed_redis.url).for_async()
    batcher = await batcher_of(adapter)  # type: ignore[arg-type]
    async with anyio.create_task_group() as group:
        with frozen(doomed_redis):
            group.start_soon(export)
            await wait_until(lambda: batcher._busy, "the acquire to be sent")
            await anyio.sleep(0.05)
            group.cancel_scope.cancel()
    assert not ran
    assert (await export.rate_limit.peek()).allowed


@pytest.mark.anyio
async def test_decorated_call_cancelled_in_its_body_releases_its_slot(doomed_redis: RedisServer) -> None:
    """A concurrency call cancelled while it runs gives its slot back, even when the release must queue."""

    @rate_limit("1/minute", algorithm="concurrency", storage=doomed_redis.url, name="body-cancel")
    async def export() -> None:
        await anyio.sleep(30)

    adapter = storage_from_url(doomed_redis.url).for_async()
    assert (await export.rate_limit.peek()).allowed
    batcher = await batcher_of(adapter)  # type: ignore[arg-type]
    running = anyio.CancelScope()

    async def run_export() -> None:
        with running:
            await export()

    async with anyio.create_task_group() as group:
        group.start_soon(run_export)
        while (await export.rate_limit.peek()).allowed:
            await anyio.sleep(0.005)
        with frozen(doomed_redis):
            group.start_soon(export.rate_limit.peek)  # in flight: the release queues behind it
            await wait_until(lambda: batcher._busy, "the round trip to start")
            running.cancel()  # the cancellation is still being delivered while the release waits
            await wait_until(lambda: len(batcher._queue) == 1, "the release to queue")
            await anyio.sleep(0.05)
    assert (await export.rate_limit.peek()).allowed
