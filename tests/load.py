"""Steady background load for fault tests: threads or asyncio tasks calling until told to stop.

Each call's outcome is counted by name: what the call returned (a string such as
``"ok"``), ``"refused"`` for :class:`limify.RateLimitExceeded`, ``"storage_error"``
for :class:`limify.StorageError`, and ``"unexpected <class>: <message>"`` for
anything else, which the tests then reject. The slowest call is remembered, so
that a test can bound how long any caller waited while a server failed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType

from limify import RateLimitExceeded, StorageError


def outcome_of(error: BaseException) -> str:
    """The name a failed call's outcome is counted under."""
    if isinstance(error, RateLimitExceeded):
        return "refused"
    if isinstance(error, StorageError):
        return "storage_error"
    return f"unexpected {type(error).__name__}: {error}"


class _Tally:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.slowest = 0.0
        self.lock = threading.Lock()

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    def record(self, outcome: str, took: float) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            self.slowest = max(self.slowest, took)

    def wait_for_calls(self, count: int, timeout: float = 15.0) -> None:
        """Block until at least ``count`` calls in all have finished."""
        target = self.calls + count
        deadline = time.monotonic() + timeout
        while self.calls < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the load made only {self.calls} calls in {timeout}s: {self.outcomes}")
            time.sleep(0.01)


class ThreadLoad(_Tally):
    """``with ThreadLoad(call, threads=4) as load:`` calls ``call()`` from threads until the block ends."""

    def __init__(self, call: Callable[[], str], threads: int = 4) -> None:
        super().__init__()
        self._call = call
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]

    def _work(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                outcome = self._call()
            except Exception as error:
                outcome = outcome_of(error)
            self.record(outcome, time.monotonic() - started)

    def __enter__(self) -> ThreadLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


class TaskLoad(_Tally):
    """``async with TaskLoad(call, tasks=50) as load:`` awaits ``call()`` from tasks until the block ends."""

    def __init__(self, call: Callable[[], Awaitable[str]], tasks: int = 50) -> None:
        super().__init__()
        self._call = call
        self._count = tasks
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _work(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                outcome = await self._call()
            except Exception as error:
                outcome = outcome_of(error)
            self.record(outcome, time.monotonic() - started)
            await asyncio.sleep(0)  # a call answered without I/O must not starve the other tasks

    async def wait_for_calls_async(self, count: int, timeout: float = 15.0) -> None:
        """Wait (without blocking the loop) until at least ``count`` more calls have finished."""
        target = self.calls + count
        deadline = time.monotonic() + timeout
        while self.calls < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the load made only {self.calls} calls in {timeout}s: {self.outcomes}")
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> TaskLoad:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._count)]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 30)
