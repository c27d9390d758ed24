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
from collections.abc import Callable, Sequence
from typing import Any

from limify.core.algorithms.base import CONSUME, AlgorithmSpec, Outcome
from limify.core.forksafe import fork_safe_lock
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.plans import Plan
from limify.errors import StorageError

__all__ = ["POLICIES", "GuardedStorage", "guarded", "check_policy"]

POLICIES = ("fail_open", "fail_closed", "local")

log = logging.getLogger("limify")

# Where one call goes (GuardedStorage._route).
_HEALTHY, _PROBE, _FALLBACK = range(3)


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

    def _route(self) -> int:
        """Where this call goes: the storage (healthy), the one probe, or the fallback."""
        if self._next_probe == 0.0:
            return _HEALTHY
        if self._probing or self._monotonic() < self._next_probe:
            return _FALLBACK  # the usual answer during an outage, without taking the lock
        with self._lock:
            if self._next_probe == 0.0:
                return _HEALTHY
            if self._probing or self._monotonic() < self._next_probe:
                return _FALLBACK
            self._probing = True
            return _PROBE

    def _failed(self, error: StorageError, route: int) -> None:
        with self._lock:
            if route == _PROBE:
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
            elif route != _PROBE:
                # A call that was already under way when another one failed: the
                # backoff set by that failure stands. Doubling it once per such call
                # would turn one outage seen by 50 concurrent callers into 30 s of
                # fallback, long after the storage is back.
                return
            else:
                self._backoff = min(self._backoff * 2, self._max_backoff)
            self._next_probe = now + self._backoff

    def _succeeded(self, route: int) -> None:
        if self._next_probe != 0.0 or route == _PROBE:
            with self._lock:
                if route == _PROBE:
                    self._probing = False
                if self._next_probe != 0.0:
                    log.warning("limify: storage %r reachable again; back from %r", self.adapter, self.policy)
                    self._next_probe = 0.0

    def _abandoned(self, route: int) -> None:
        """A call ended with neither an answer nor a storage failure (cancelled, bad input)."""
        if route == _PROBE:
            with self._lock:
                self._probing = False  # the next call probes instead

    def _fallback(
        self, error: StorageError | None, spec: AlgorithmSpec, keys: Sequence[str], plans: Sequence[Plan],
        cost: int, mode: str, token: str,
    ) -> Outcome:  # fmt: skip
        if self._local is not None:
            return self._local.execute(spec, keys, plans, cost, mode, token)
        if self.policy == "fail_open":
            return (True, max(0, min(plan.limit for plan in plans) - cost), 0, 0, 0, 0)
        raise StorageError(f"storage unavailable and on_storage_error='fail_closed': {error or 'in backoff'}")

    def execute(
        self,
        spec: AlgorithmSpec,
        keys: Sequence[str],
        plans: Sequence[Plan],
        cost: int,
        mode: str = CONSUME,
        token: str = "",
    ) -> Outcome:
        """The adapter's answer, or the policy's while the adapter is unreachable."""
        route = self._route()
        if route == _FALLBACK:
            return self._fallback(None, spec, keys, plans, cost, mode, token)
        try:
            outcome: Outcome = self.adapter.execute(spec, keys, plans, cost, mode, token)
        except StorageError as error:
            self._failed(error, route)
            return self._fallback(error, spec, keys, plans, cost, mode, token)
        except BaseException:
            self._abandoned(route)
            raise
        self._succeeded(route)
        return outcome

    async def execute_async(
        self,
        spec: AlgorithmSpec,
        keys: Sequence[str],
        plans: Sequence[Plan],
        cost: int,
        mode: str = CONSUME,
        token: str = "",
    ) -> Outcome:
        """Awaitable twin of :meth:`execute`."""
        route = self._route()
        if route == _FALLBACK:
            return self._fallback(None, spec, keys, plans, cost, mode, token)
        try:
            outcome: Outcome = await self.adapter.execute_async(spec, keys, plans, cost, mode, token)
        except StorageError as error:
            self._failed(error, route)
            return self._fallback(error, spec, keys, plans, cost, mode, token)
        except BaseException:
            self._abandoned(route)
            raise
        self._succeeded(route)
        return outcome

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
