"""``os.fork`` while another thread holds a Limify lock: the child still checks limits, never deadlocks.

Pre-fork servers (gunicorn, multiprocessing's fork start method) fork while the
parent's threads run. A lock held by one of them at that instant would stay held
for ever in the child. Each test forks real child processes and waits for them
with a deadline; a child that hangs is killed and fails the test.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from limify import InMemoryAdapter, Plan, RateLimitExceeded, configure, plans, rate_limit
from limify.core import refusals, resilience, storage
from limify.core.algorithms.token_bucket import TokenBucketAlgorithm
from limify.core.resilience import GuardedStorage

CHILD_DEADLINE = 10.0  # seconds; a healthy child takes milliseconds


def fork_and_run(work: Callable[[], None]) -> int:
    """Fork; the child runs ``work`` and exits 0 (1 on an exception). Return the child's exit status."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a multi-threaded process: that is the very case under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            work()
        except BaseException:
            os._exit(1)
        os._exit(0)
    deadline = time.monotonic() + CHILD_DEADLINE
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child deadlocked: it did not finish within the deadline")


@contextmanager
def held_by_another_thread(lock: threading.Lock) -> Iterator[None]:
    """Hold ``lock`` in a second thread for the duration of the block."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_a_child_forked_while_the_memory_adapter_is_locked_can_check() -> None:
    """The store's lock held by a parent thread at fork: the child checks limits, with the parent's counts."""
    adapter = InMemoryAdapter()
    limit = TokenBucketAlgorithm(adapter)
    plan = Plan("default", 2, 3600)
    assert limit.check("k", plan).allowed

    def child() -> None:
        assert limit.check("k", plan).allowed  # the child inherited one call of two
        assert not limit.check("k", plan).allowed

    with held_by_another_thread(adapter._lock):
        assert fork_and_run(child) == 0


def test_every_lock_on_the_check_path_is_renewed_in_the_child() -> None:
    """Storage URLs, process defaults, plan registry and failure-policy guards: none stays held in a child."""
    url = storage.storage_from_url("memory://")
    remote_guard = GuardedStorage(InMemoryAdapter(), "fail_open")
    owners = [(url, "_lock"), (storage._urls, "_lock"), (storage.DEFAULTS, "lock"), (plans, "_lock"),
              (remote_guard, "_lock"), (resilience, "_guards_lock"), (refusals._caches, "_lock")]  # fmt: skip

    @rate_limit("1/hour", name="fork-path")
    def call() -> str:
        return "ok"

    def child() -> None:
        for owner, attribute in owners:
            lock = getattr(owner, attribute)
            assert lock.acquire(timeout=1), (owner, attribute)
            lock.release()
        configure(on_storage_error="fail_closed")
        storage.storage_from_url("memory://forked")
        plans.register("fork-plan", "5/minute")
        assert call() == "ok"
        with pytest.raises(RateLimitExceeded):
            call()

    held = [held_by_another_thread(getattr(owner, attribute)) for owner, attribute in owners]
    for context in held:
        context.__enter__()
    try:
        assert fork_and_run(child) == 0
    finally:
        for context in reversed(held):
            context.__exit__(None, None, None)


def test_forks_under_a_hammering_thread_never_deadlock() -> None:
    """20 forks while a thread checks limits non-stop (the issue saw 6 to 8 of 20 deadlock): all 20 finish."""
    adapter = InMemoryAdapter()
    limit = TokenBucketAlgorithm(adapter)
    plan = Plan("default", 10**9, 1)
    stop = threading.Event()

    def hammer() -> None:
        index = 0
        while not stop.is_set():
            limit.check(f"k{index % 1000}", plan)
            index += 1

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        statuses = [fork_and_run(lambda: limit.check("child", plan) and None) for _ in range(20)]
    finally:
        stop.set()
        thread.join()
    assert statuses == [0] * 20


@pytest.mark.parametrize(
    "store, fixture",
    [("redis", "redis_url"), ("postgres", "postgres_server_url"), ("memcached", "memcached_url")],
)
def test_a_child_forked_from_a_remote_store_user_opens_its_own_connections(
    store: str, fixture: str, request: pytest.FixtureRequest
) -> None:
    """URL-built Redis, PostgreSQL and Memcached clients used before the fork serve the child on
    fresh connections, and the counts are shared."""
    url = request.getfixturevalue(fixture)

    @rate_limit("2/hour", key="user", storage=url, name=f"fork-{store}-{os.getpid()}-{time.time_ns()}")
    def call(user: str) -> str:
        return "ok"

    assert call("a") == "ok"

    def child() -> None:
        assert call("a") == "ok"  # the second of two, on the child's own connection

    assert fork_and_run(child) == 0
    with pytest.raises(RateLimitExceeded):
        call("a")  # the parent's connections still work, and see the child's call
