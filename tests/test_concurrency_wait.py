"""on_exceeded="wait" on a concurrency limit: a waiting call wakes soon after a slot is released.

The storage runs on a ManualClock that the tests never move, so no lease ever
expires: a waiting call can only be admitted by a release. A refused acquire's
``retry_after`` is then the full 60 s lease, which the wait must not sleep.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from limify import InMemoryAdapter, ManualClock, RateLimitExceeded, rate_limit

LEASE = "1/minute"  # one slot, held up to 60 s
#: How soon after a release a waiting call must run: the poll interval grows to 0.25 s at
#: most; the rest is slack for a loaded machine. Sleeping out the lease would take 60 s.
SOON = 2.0


def held_slot_and_waiter(**wait_options: Any) -> tuple[Any, Any, threading.Event]:
    """A sync holder whose call runs until the returned event is set, and a waiter on the same slot."""
    storage = InMemoryAdapter(clock=ManualClock())
    release = threading.Event()

    @rate_limit(LEASE, algorithm="concurrency", storage=storage, name="sync-slot")
    def holder() -> None:
        assert release.wait(10)

    @rate_limit(
        LEASE, algorithm="concurrency", storage=storage, name="sync-slot", on_exceeded="wait", **wait_options
    )
    def waiter() -> str:
        return "admitted"

    return holder, waiter, release


def async_held_slot_and_waiter(name: str, **wait_options: Any) -> tuple[Any, Any, anyio.Event]:
    """held_slot_and_waiter() for async code: the holder runs until the returned event is set."""
    storage = InMemoryAdapter(clock=ManualClock())
    release = anyio.Event()

    @rate_limit(LEASE, algorithm="concurrency", storage=storage, name=name)
    async def holder() -> None:
        await release.wait()

    @rate_limit(
        LEASE, algorithm="concurrency", storage=storage, name=name, on_exceeded="wait", **wait_options
    )
    async def waiter() -> str:
        return "admitted"

    return holder, waiter, release


@pytest.mark.parametrize("max_wait", [None, 5.0])
def test_sync_waiter_is_admitted_soon_after_a_release(max_wait: float | None) -> None:
    """A call waiting for the one slot runs once the holder releases it, not after the 60 s lease."""
    holder, waiter, release = held_slot_and_waiter(max_wait=max_wait)
    outcome: list[Any] = []

    def wait_for_slot() -> None:
        try:
            outcome.append(waiter())
            outcome.append(time.monotonic())
        except RateLimitExceeded as exc:
            outcome.append(exc)

    holding = threading.Thread(target=holder)
    holding.start()
    try:
        while holder.rate_limit.peek().allowed:  # the holder has the slot
            time.sleep(0.001)
        waiting = threading.Thread(target=wait_for_slot, daemon=True)
        waiting.start()
        time.sleep(0.1)  # the waiter has been refused at least once by now
        assert outcome == []  # still waiting (it neither ran nor gave up)
    finally:
        released = time.monotonic()
        release.set()
        holding.join()
    waiting.join(5)
    assert outcome[:1] == ["admitted"]
    assert outcome[1] - released < SOON


def test_sync_waiter_gives_up_at_max_wait() -> None:
    """With no release, a waiting call raises RateLimitExceeded once max_wait has passed, not at once."""
    holder, waiter, release = held_slot_and_waiter(max_wait=0.2)
    holding = threading.Thread(target=holder)
    holding.start()
    try:
        while holder.rate_limit.peek().allowed:
            time.sleep(0.001)
        started = time.monotonic()
        with pytest.raises(RateLimitExceeded) as caught:
            waiter()
        waited = time.monotonic() - started
    finally:
        release.set()
        holding.join()
    assert 0.2 <= waited < 5
    assert caught.value.retry_after == pytest.approx(60)  # when the lease would expire


@pytest.mark.anyio
@pytest.mark.parametrize("max_wait", [None, 5.0])
async def test_async_waiter_is_admitted_soon_after_a_release(max_wait: float | None) -> None:
    """An async call waiting for the one slot runs once the holder releases it (asyncio and trio)."""
    holder, waiter, release = async_held_slot_and_waiter("async-slot", max_wait=max_wait)
    outcome: list[Any] = []

    async def wait_for_slot() -> None:
        outcome.append(await waiter())
        outcome.append(time.monotonic())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(holder)
            while (await holder.rate_limit.peek()).allowed:
                await anyio.sleep(0.001)
            group.start_soon(wait_for_slot)
            await anyio.sleep(0.1)
            assert outcome == []
            released = time.monotonic()
            release.set()
    assert outcome[:1] == ["admitted"]
    assert outcome[1] - released < SOON


@pytest.mark.anyio
async def test_async_waiter_gives_up_at_max_wait() -> None:
    """With no release, an async waiting call raises RateLimitExceeded after max_wait, not at once."""
    holder, waiter, release = async_held_slot_and_waiter("async-give-up", max_wait=0.2)
    async with anyio.create_task_group() as group:
        group.start_soon(holder)
        while (await holder.rate_limit.peek()).allowed:
            await anyio.sleep(0.001)
        started = time.monotonic()
        with pytest.raises(RateLimitExceeded):
            await waiter()
        waited = time.monotonic() - started
        release.set()
    assert 0.2 <= waited < 5


@pytest.mark.anyio
async def test_waiting_call_cancelled_holds_no_slot() -> None:
    """A call cancelled while it waits for a slot leaves nothing held: once the holder ends, all is free."""
    storage = InMemoryAdapter(clock=ManualClock())
    release = anyio.Event()

    @rate_limit("2/minute", algorithm="concurrency", storage=storage, name="cancel-wait", on_exceeded="wait")
    async def work() -> None:
        await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(work)
        group.start_soon(work)
        while (await work.rate_limit.peek()).allowed:
            await anyio.sleep(0.001)
        with anyio.move_on_after(0.1):
            await work()  # waits for a slot, then is cancelled
        release.set()
    assert (await work.rate_limit.peek()).remaining == 1  # both slots free: one call would leave 1
