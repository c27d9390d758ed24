"""Pauses: "hold back from this upstream for N ms", shared through the limit's storage.

When an upstream answers 429/503 with ``Retry-After``, every caller sharing the
storage must hold back, in this process and in every other one on the same
Redis. A pause is storage data, not an algorithm: one key per upstream whose
remaining lifetime is the pause left. There is no math beyond "keep the longer
of two pauses", so it needs no transition and no Lua twin test; the Lua script
(``pause.lua``) and :class:`MemoryPauses` implement the same three lines.

One operation serves both uses: ``hold(key, ms)`` extends the pause to at least
``ms`` from now (``ms = 0`` only reads) and returns the pause left in ms. Redis
measures it with its own clock (``PTTL``), so app servers with skewed clocks
agree on when it ends.
"""

from __future__ import annotations

import sys
import weakref
from importlib.resources import files
from typing import Any, Protocol

from limify.core.clock import Clock
from limify.core.forksafe import fork_safe_lock
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter, is_storage_failure
from limify.errors import StorageError

__all__ = ["SyncPauses", "AsyncPauses", "MemoryPauses", "RedisPauses", "AsyncRedisPauses", "pauses_for"]

PAUSE_SCRIPT = files("limify.contrib").joinpath("pause.lua").read_text(encoding="utf-8")


class SyncPauses(Protocol):
    def hold(self, key: str, ms: int) -> int:
        """Extend ``key``'s pause to at least ``ms`` from now (0: only read); return the ms left."""
        ...


class AsyncPauses(Protocol):
    async def hold_async(self, key: str, ms: int) -> int:
        """Awaitable twin of :meth:`SyncPauses.hold`."""
        ...


class MemoryPauses:
    """Pauses of one :class:`~limify.InMemoryAdapter`, on that adapter's clock (twin of pause.lua)."""

    #: Beyond this many pauses, ended ones are swept when a new one starts.
    SWEEP_ABOVE = 1024

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._until_us: dict[str, int] = {}
        self._lock = fork_safe_lock(self)

    def hold(self, key: str, ms: int) -> int:
        with self._lock:
            now = self.clock.now_us()
            left_us = self._until_us.get(key, now) - now
            if ms > 0 and ms * 1000 > left_us:
                if len(self._until_us) > self.SWEEP_ABOVE:
                    self._until_us = {k: u for k, u in self._until_us.items() if u > now}
                self._until_us[key] = now + ms * 1000
                return ms
            if left_us <= 0:
                self._until_us.pop(key, None)
                return 0
            return -(-left_us // 1000)  # whole ms, rounded up: never report a pause as over early

    async def hold_async(self, key: str, ms: int) -> int:
        return self.hold(key, ms)


class RedisPauses:
    """Pauses on a :class:`~limify.core.redis_adapter.RedisSyncAdapter`'s server."""

    def __init__(self, adapter: RedisSyncAdapter) -> None:
        self.adapter = adapter
        self._sha: str | None = None

    def hold(self, key: str, ms: int) -> int:
        try:
            if self._sha is None:  # registers the source, so NOSCRIPT is recovered later
                self._sha = self.adapter.script_load(PAUSE_SCRIPT)
            return int(self.adapter.evalsha(self._sha, 1, key, ms))
        except Exception as exc:
            if is_storage_failure(exc):  # unreachable, or refusing calls (OOM, READONLY...)
                raise StorageError(f"Redis unusable: {exc}") from exc
            raise


class AsyncRedisPauses:
    """Pauses on a :class:`~limify.core.redis_adapter.RedisAsyncAdapter`'s server."""

    def __init__(self, adapter: RedisAsyncAdapter) -> None:
        self.adapter = adapter
        self._sha: str | None = None

    async def hold_async(self, key: str, ms: int) -> int:
        try:
            if self._sha is None:
                self._sha = await self.adapter.script_load(PAUSE_SCRIPT)
            return int(await self.adapter.evalsha(self._sha, 1, key, ms))
        except Exception as exc:
            if is_storage_failure(exc):  # unreachable, or refusing calls (OOM, READONLY...)
                raise StorageError(f"Redis unusable: {exc}") from exc
            raise


# Every client of one in-memory adapter shares its pauses, as they share its buckets.
_memory_pauses: weakref.WeakKeyDictionary[InMemoryAdapter, MemoryPauses] = weakref.WeakKeyDictionary()
_memory_lock = fork_safe_lock(sys.modules[__name__], "_memory_lock")


def pauses_for(adapter: Any, *, is_async: bool) -> Any:
    """The pause store living beside ``adapter`` (an adapter from ``adapter_for``).

    Raises:
        TypeError: the adapter is of a kind pauses cannot be stored on.
    """
    if isinstance(adapter, InMemoryAdapter):
        with _memory_lock:
            found = _memory_pauses.get(adapter)
            if found is None:
                found = _memory_pauses[adapter] = MemoryPauses(adapter.clock)
        return found
    if is_async and isinstance(adapter, RedisAsyncAdapter):
        return AsyncRedisPauses(adapter)
    if not is_async and isinstance(adapter, RedisSyncAdapter):
        return RedisPauses(adapter)
    raise TypeError(
        f"cannot store upstream pauses on {adapter!r}: use a storage URL, InMemoryAdapter, "
        "RedisSyncAdapter or RedisAsyncAdapter, or pass pause_on=() to ignore Retry-After"
    )
