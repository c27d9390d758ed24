"""Decorated ``concurrency`` limits in memory: slots held by calls in flight, exactly.

An in-memory lease limit of one plan and a fixed cost takes and releases its
slots through the store's runner (the hot path); these tests hold it to what
the engine's path promises: never more calls inside than the limit, under
threads and tasks, every slot back on return, on error and on cancellation.
"""

from __future__ import annotations

import threading

import anyio
import pytest

from limify import InMemoryAdapter, RateLimitExceeded, events, rate_limit

THREADS, CALLS = 8, 200


def test_threads_never_hold_more_slots_than_the_limit() -> None:
    """8 threads calling a 3-slot limit: at most 3 bodies run at once; every refusal is counted; all come back."""
    inside, most, refused, lock = 0, 0, 0, threading.Lock()
    bodies = 0

    @rate_limit("3/minute", algorithm="concurrency", storage=InMemoryAdapter(), key="user", name="threads")
    def work(user: str) -> None:
        nonlocal inside, most, bodies
        with lock:
            inside += 1
            most = max(most, inside)
            bodies += 1
        # Give the other threads a chance to come in while this slot is held.
        threading.Event().wait(0.0001)
        with lock:
            inside -= 1

    def caller() -> None:
        nonlocal refused
        for _ in range(CALLS):
            try:
                work("alice")
            except RateLimitExceeded as error:
                assert error.result.limit == 3 and error.result.remaining == 0
                with lock:
                    refused += 1

    threads = [threading.Thread(target=caller) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most <= 3
    assert bodies + refused == THREADS * CALLS and bodies > 0
    assert work.rate_limit.peek("alice").remaining == 2  # every slot came back (a peek counts itself)


def test_a_refused_call_names_its_key_and_a_raising_body_gives_its_slot_back() -> None:
    store = InMemoryAdapter()

    @rate_limit("1/minute", algorithm="concurrency", storage=store, key="user", name="one-slot")
    def work(user: str, inner: bool = False, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("boom")
        if inner:
            work(user)

    with pytest.raises(RateLimitExceeded) as refused:
        work("bob", inner=True)  # the inner call finds bob's only slot taken
    assert refused.value.key.endswith(":bob") and refused.value.retry_after == pytest.approx(60, abs=0.01)
    work("carol", inner=False)  # other keys are not held up
    with pytest.raises(RuntimeError):
        work("bob", fail=True)
    assert len(store) == 0  # no lease left behind: the keys' state is gone


def test_decisions_are_reported_while_someone_listens() -> None:
    """With a subscriber, a lease limit's calls go through the engine and are all reported."""
    seen: list[events.Decision] = []

    @rate_limit("1/minute", algorithm="concurrency", storage=InMemoryAdapter(), name="watched")
    def work() -> None:
        work_inner()

    @rate_limit("5/minute", algorithm="concurrency", storage=InMemoryAdapter(), name="watched-inner")
    def work_inner() -> None:
        pass

    with events.subscribed(seen.append):
        work()
        work()
    assert [(event.name, event.allowed) for event in seen] == [("watched", True), ("watched-inner", True)] * 2


@pytest.mark.anyio
async def test_cancelled_tasks_give_their_slots_back(anyio_backend: str) -> None:
    """Tasks cancelled while holding slots (asyncio and trio) release every one of them."""
    started = 0

    @rate_limit("4/minute", algorithm="concurrency", storage=InMemoryAdapter(), key="user", name="cancel")
    async def hold(user: str) -> None:
        nonlocal started
        started += 1
        await anyio.sleep_forever()

    async def attempt() -> None:
        try:
            await hold("dave")
        except RateLimitExceeded:
            pass

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(attempt)
        while started < 4:
            await anyio.sleep(0.001)
        group.cancel_scope.cancel()
    assert started == 4
    assert (await hold.rate_limit.peek("dave")).remaining == 3  # all 4 free (a peek counts itself)
