"""Failure policies: what a limit answers while its storage is unreachable.

``fail_open``
    Admit every call (reported as a full limit) until the storage is back.
``fail_closed``
    Refuse every call by raising :class:`limify.StorageError` (web adapters answer 503).
``local``
    Decide with an in-process :class:`~limify.InMemoryAdapter` meanwhile: limits
    then hold per process instead of across processes.

Whatever the policy, after a failure the remote storage is left alone for a
backoff delay (1 s, doubling up to 30 s) and then probed by one call: the first
one made after the delay. While that probe is in flight every other call, in
any thread or task, gets the policy's answer at once; the probe's outcome then
ends the backoff or doubles it. So a dead server costs at most one caller at a
time one timeout, instead of making every caller wait on its own. Each switch
away from the storage and back is logged once on the ``limify`` logger, not
once per call.
"""

from __future__ import annotations

import logging
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from limify.core.algorithms.base import Outcome
from limify.core.check import Check
from limify.core.forksafe import fork_safe_lock
from limify.core.memory_adapter import InMemoryAdapter
from limify.errors import StorageError

__all__ = ["POLICIES", "GuardedStorage", "Fallback", "open_answer", "guarded", "check_policy"]

POLICIES = ("fail_open", "fail_closed", "local")

log = logging.getLogger("limify")

#: Where one call goes (:meth:`GuardedStorage.route`): the storage, the one probe, the policy.
HEALTHY, PROBE, FALLBACK = range(3)


class Fallback(Outcome):
    """An outcome the ``fail_open`` policy answered: admitted, the storage not asked.

    It reports a full limit (``remaining`` = the smallest limit minus the cost),
    the same through every entry point; web adapters send no rate-limit headers
    for it, since no limit was checked.
    """

    __slots__ = ()


def open_answer(check: Check) -> Fallback:
    """What ``fail_open`` answers for ``check``: admitted, the smallest limit full."""
    plans = check.plans
    smallest = min(range(len(plans)), key=lambda index: plans[index].limit)
    return Fallback(True, max(0, plans[smallest].limit - check.cost), 0, 0, smallest, 0)


def check_policy(policy: Any) -> str:
    """Return ``policy`` if it is one of :data:`POLICIES`, else raise ``ValueError``."""
    if policy not in POLICIES:
        raise ValueError(f"on_storage_error must be one of {', '.join(map(repr, POLICIES))}; got {policy!r}")
    return str(policy)


class GuardedStorage:
    """A storage adapter behind a failure policy (see the module docs)."""

    def __init__(
        self,
        adapter: Any,
        policy: str,
        *,
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.adapter = adapter
        self.policy = check_policy(policy)
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._monotonic = monotonic
        self._lock = fork_safe_lock(self)
        self._backoff = 0.0
        self._next_probe = 0.0  # 0: healthy
        self._probing = False  # a probe is in flight: everyone else falls back
        self._local = InMemoryAdapter() if policy == "local" else None

    @property
    def healthy(self) -> bool:
        """False while the storage is considered unreachable."""
        return self._next_probe == 0.0

    @property
    def probing(self) -> bool:
        """True while one call probes the unreachable storage (every other call falls back)."""
        return self._probing

    def route(self) -> int:
        """Where this call goes: the storage (healthy), the one probe, or the fallback."""
        if self._next_probe == 0.0:
            return HEALTHY
        if self._probing or self._monotonic() < self._next_probe:
            return FALLBACK  # the usual answer during an outage, without taking the lock
        with self._lock:
            if self._next_probe == 0.0:
                return HEALTHY
            if self._probing or self._monotonic() < self._next_probe:
                return FALLBACK
            self._probing = True
            return PROBE

    def failed(self, error: StorageError, route: int) -> None:
        """A call on ``route`` found the storage unusable: start or extend the backoff."""
        with self._lock:
            if route == PROBE:
                self._probing = False
            now = self._monotonic()
            if self._next_probe == 0.0:
                log.warning(
                    "limify: storage %r unreachable (%s); applying on_storage_error=%r",
                    self.adapter,
                    error,
                    self.policy,
                )
                self._backoff = self._first_backoff
            elif route != PROBE:
                # A call that was already under way when another one failed: the
                # backoff set by that failure stands. Doubling it once per such call
                # would turn one outage seen by 50 concurrent callers into 30 s of
                # fallback, long after the storage is back.
                return
            else:
                self._backoff = min(self._backoff * 2, self._max_backoff)
            self._next_probe = now + self._backoff

    def succeeded(self, route: int) -> None:
        """A call on ``route`` got the storage's answer: the outage, if any, is over."""
        if self._next_probe != 0.0 or route == PROBE:
            with self._lock:
                if route == PROBE:
                    self._probing = False
                if self._next_probe != 0.0:
                    log.warning("limify: storage %r reachable again; back from %r", self.adapter, self.policy)
                    self._next_probe = 0.0

    def abandoned(self, route: int) -> None:
        """A call ended with neither an answer nor a storage failure (cancelled, bad input)."""
        if route == PROBE:
            with self._lock:
                self._probing = False  # the next call probes instead

    def fallback(self, error: StorageError | None, check: Check) -> Outcome:
        """The policy's answer to ``check``: local store, :func:`open_answer`, or StorageError."""
        if self._local is not None:
            return self._local.execute(check)
        if self.policy == "fail_open":
            return open_answer(check)
        raise StorageError(f"storage unavailable and on_storage_error='fail_closed': {error or 'in backoff'}")

    def _fallback_hold(self, error: StorageError | None, pause: tuple[str, int]) -> int:
        if self._local is not None:
            return self._local.hold(*pause)
        if self.policy == "fail_open":
            return 0  # no pause known: let the request go
        raise StorageError(f"storage unavailable and on_storage_error='fail_closed': {error or 'in backoff'}")

    def _guarded(self, call: Callable[[Any], Any], argument: Any, fallback: Callable[..., Any]) -> Any:
        """``call(argument)`` on the adapter, or ``fallback(error, argument)`` per the policy."""
        with _Attempt(self) as attempt:
            if attempt.route != FALLBACK:
                return call(argument)
        return fallback(attempt.error, argument)

    async def _guarded_async(
        self, call: Callable[[Any], Awaitable[Any]], argument: Any, fallback: Callable[..., Any]
    ) -> Any:
        """Awaitable twin of :meth:`_guarded`."""
        with _Attempt(self) as attempt:
            if attempt.route != FALLBACK:
                return await call(argument)
        return fallback(attempt.error, argument)

    def execute(self, check: Check) -> Outcome:
        """The adapter's answer, or the policy's while the adapter is unreachable."""
        outcome: Outcome = self._guarded(self.adapter.execute, check, self.fallback)
        return outcome

    async def execute_async(self, check: Check) -> Outcome:
        """Awaitable twin of :meth:`execute`."""
        outcome: Outcome = await self._guarded_async(self.adapter.execute_async, check, self.fallback)
        return outcome

    def hold(self, key: str, ms: int) -> int:
        """The adapter's outbound pause of ``key``, or the policy's answer while it is unreachable."""
        left: int = self._guarded(lambda pause: self.adapter.hold(*pause), (key, ms), self._fallback_hold)
        return left

    async def hold_async(self, key: str, ms: int) -> int:
        """Awaitable twin of :meth:`hold`."""
        left: int = await self._guarded_async(
            lambda pause: self.adapter.hold_async(*pause), (key, ms), self._fallback_hold
        )
        return left

    def clear(self, keys: Sequence[str]) -> None:
        """Clear ``keys`` remotely (and locally under the ``local`` policy)."""
        if self._local is not None:
            self._local.clear(keys)
        self.adapter.clear(keys)

    async def clear_async(self, keys: Sequence[str]) -> None:
        """Awaitable twin of :meth:`clear`."""
        if self._local is not None:
            self._local.clear(keys)
        await self.adapter.clear_async(keys)

    def __repr__(self) -> str:
        return f"GuardedStorage({self.adapter!r}, policy={self.policy!r})"


_guards: weakref.WeakKeyDictionary[Any, dict[str, GuardedStorage]] = weakref.WeakKeyDictionary()
_guards_lock = fork_safe_lock(sys.modules[__name__], "_guards_lock")


def guarded(adapter: Any, policy: str) -> Any:
    """``adapter`` behind ``policy``, shared by every limit using the same pair.

    In-memory adapters cannot fail and are returned as they are.
    """
    if isinstance(adapter, (InMemoryAdapter, GuardedStorage)):
        return adapter
    with _guards_lock:
        by_policy = _guards.setdefault(adapter, {})
        guard = by_policy.get(policy)
        if guard is None:
            guard = by_policy[policy] = GuardedStorage(adapter, policy)
        return guard


class _Attempt:
    """One call's way to the storage (:meth:`GuardedStorage.route`), as a ``with`` block around
    the call: its end tells the guard how it went, and a :class:`StorageError` is kept in
    :attr:`error` (the block is left, for the policy to answer) instead of propagating."""

    __slots__ = ("guard", "route", "error")

    def __init__(self, guard: GuardedStorage) -> None:
        self.guard = guard
        self.route = guard.route()
        self.error: StorageError | None = None

    def __enter__(self) -> _Attempt:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: Any) -> bool:
        route = self.route
        if route == FALLBACK:
            return False
        if kind is None:
            self.guard.succeeded(route)
            return False
        if isinstance(error, StorageError):
            self.guard.failed(error, route)
            self.error = error
            return True
        self.guard.abandoned(route)  # cancelled, or bad input: no verdict on the storage
        return False
