"""Refusals known to hold: answered in process, without a round trip to the store.

A refused call learns when the same call can next be admitted (``retry_after``).
Until then, for every algorithm but the leases, nothing another process does can
bring that moment closer except a refund or a reset: other callers only consume,
which pushes it later. So a flood of refused calls for one key (a client that
ignores ``Retry-After``, a retry loop) is refused from this cache, at the cost of
a dict lookup, instead of asking Redis each time.

Exact, with one documented exception: a refund or reset made by *another*
process (or a raised limit) is not seen until the cached refusal ends, so a call
may be refused a little longer than needed, never admitted beyond the limit.
Refunds and resets made through this process forget the keys they touch at once.
Lease algorithms (``concurrency``) are never cached: a release anywhere frees a
slot at any moment; nor are checks that count their refusals (a rule with a
``Penalty``), whose every refusal must reach the store. Calls of a smaller cost
than the refused one ask the store.

On by default for ``@rate_limit``, web rules and outbound transports, on every
store: on a remote one it saves a round trip, in memory the lock and the
transition (a refused call then costs a dict lookup); ``rate_limit(...,
cache_refusals=False)`` turns it off for a limit. Algorithm shells
(``TokenBucketAlgorithm(...).check``) never cache.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from limify.core.algorithms.base import Outcome
from limify.core.forksafe import OnePer

__all__ = ["RefusalCache", "MAX_CACHED", "cache_of", "forget_cleared", "forget_all_refusals"]


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


#: Most refusals held at once per store; beyond it the ones already over are dropped,
#: then the oldest.
MAX_CACHED = 10_000


class RefusalCache:
    """One store's refusals known to hold (see the module docs and :func:`cache_of`)."""

    __slots__ = ("held", "_now_us")

    def __init__(self, now_us: Callable[[], int] | None = None) -> None:
        #: keys -> (end in µs, refused cost, the refusal, start in µs), on ``now_us``'s clock;
        #: empty (the usual case) means nothing to look up.
        self.held: dict[tuple[str, ...], tuple[int, int, Outcome, int]] = {}
        #: The store's clock when it runs on the caller's (a :class:`~limify.ManualClock` in
        #: tests); the monotonic clock when it reads the server's time.
        self._now_us = now_us if now_us is not None else _monotonic_us

    def known(self, keys: tuple[str, ...], cost: int) -> Outcome | None:
        """The refusal of a call of ``cost`` on ``keys`` if one is known to hold now, aged to now."""
        entry = self.held.get(keys)
        if entry is None:
            return None
        until, refused_cost, outcome, since = entry
        now = self._now_us()
        if now >= until:
            self.held.pop(keys, None)
            return None
        if cost < refused_cost:
            return None
        elapsed = now - since
        return Outcome(False, outcome.remaining, max(0, outcome.reset_us - elapsed), until - now,
                       outcome.decided_by, outcome.now_us)  # fmt: skip

    def retry_us(self, keys: tuple[str, ...], cost: int) -> int:
        """Microseconds a known refusal of ``cost`` on ``keys`` still holds; 0 if none (the hot path's test)."""
        entry = self.held.get(keys)
        if entry is None or cost < entry[1]:
            return 0
        left = entry[0] - self._now_us()
        return left if left > 0 else 0

    def refusal(self, keys: tuple[str, ...], cost: int) -> tuple[int, int, int] | None:
        """``(remaining, reset_us, retry_us)`` of a known refusal of ``cost`` on ``keys``, aged to
        now; ``None`` if none holds (the hot paths' form of :meth:`known`)."""
        entry = self.held.get(keys)
        if entry is None or cost < entry[1]:
            return None
        now = self._now_us()
        left = entry[0] - now
        if left <= 0:
            return None
        outcome = entry[2]
        reset = outcome.reset_us - (now - entry[3])
        return outcome.remaining, reset if reset > 0 else 0, left

    def remaining_of(self, keys: tuple[str, ...]) -> int:
        """The ``remaining`` reported by the known refusal on ``keys``."""
        return self.held[keys][2].remaining

    def remember(self, keys: tuple[str, ...], cost: int, outcome: Outcome) -> None:
        """Hold the store's refusal of a call of ``cost`` on ``keys`` until its retry time."""
        if outcome.retry_us <= 0:
            return
        held = self.held
        if len(held) >= MAX_CACHED:
            now = self._now_us()
            for stale in [k for k, entry in held.items() if entry[0] <= now]:
                del held[stale]
            while len(held) >= MAX_CACHED:
                del held[next(iter(held))]
        now = self._now_us()
        held[keys] = (now + outcome.retry_us, cost, outcome, now)

    def forget(self, keys: tuple[str, ...]) -> None:
        """Drop every refusal on any of ``keys`` (a refund or reset through this process)."""
        if not self.held:
            return
        touched = set(keys)
        for cached in [k for k in self.held if touched.intersection(k)]:
            del self.held[cached]

    def __len__(self) -> int:
        return len(self.held)


_caches: OnePer[Any, RefusalCache] = OnePer(weakref.WeakKeyDictionary())


def cache_of(store: Any, now_us: Callable[[], int] | None) -> RefusalCache:
    """The refusal cache of ``store``, shared by every limit of this process on it.

    One per store, so that a refund or reset made through any limit (a web rule's
    ``reset``, the application-wide limits', a decorator's handle) forgets the
    refusals every other limit cached on the same keys. A store that cannot be
    weakly referenced gets a cache of its own each time.
    """
    try:
        return _caches.get(store, lambda: RefusalCache(now_us))
    except TypeError:
        return RefusalCache(now_us)


def forget_all_refusals() -> None:
    """Drop every refusal cached in this process (:func:`limify.testing.reset_all`: a test
    that flushed its Redis database starts with nothing refused)."""
    for cache in _caches.values():
        cache.held.clear()


def forget_cleared(store: Any, keys: Sequence[str] | None = None) -> None:
    """Drop the refusals cached for ``store`` on ``keys`` (``None``: all of them): the store
    cleared them, so they may be admitted at once."""
    try:
        cache = _caches.find(store)
    except TypeError:
        return
    if cache is not None:
        cache.held.clear() if keys is None else cache.forget(tuple(keys))
