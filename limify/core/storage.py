"""Storage resolution: URLs and adapters, and the process default.

A storage URL stands for a pair of adapters, built lazily and shared by every
limit that names the same URL: a sync one for sync callables and an async one
for async callables. ``memory://`` is one :class:`InMemoryAdapter` serving both.
"""

from __future__ import annotations

import sys
from typing import Any, Union
from urllib.parse import urlsplit

from limify.core.algorithms.base import AsyncStorage, SyncStorage
from limify.core.forksafe import fork_safe_lock
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.redis_clients import SCHEMES as REDIS_SCHEMES
from limify.core.redis_clients import check_url
from limify.core.resilience import check_policy, guarded

__all__ = [
    "StorageLike",
    "StorageURL",
    "storage_from_url",
    "adapter_for",
    "check_storage",
    "configure_default",
    "default_storage",
    "Defaults",
    "DEFAULTS",
    "SCHEMES",
]

#: What ``storage=`` accepts: a URL, or an adapter instance.
StorageLike = Union[str, SyncStorage, AsyncStorage]

SCHEMES = ("memory", *REDIS_SCHEMES)


class StorageURL:
    """A storage URL and the adapters it stands for (see module docs)."""

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"storage URL must be a str, got {url!r}")
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
        if scheme not in SCHEMES:
            raise ValueError(
                f"unsupported storage URL {url!r}: expected one of "
                + ", ".join(f"'{s}://...'" for s in SCHEMES)
            )
        if scheme != "memory":
            check_url(url)
        self.url = url
        self.scheme = scheme
        self._lock = fork_safe_lock(self)
        self._memory = InMemoryAdapter() if scheme == "memory" else None
        self._sync: SyncStorage | None = self._memory
        self._async: AsyncStorage | None = self._memory

    def for_sync(self) -> SyncStorage:
        """The adapter serving sync callables (created on first use)."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    from limify.core.redis_adapter import RedisSyncAdapter

                    self._sync = RedisSyncAdapter.from_url(self.url)
        return self._sync

    def for_async(self) -> AsyncStorage:
        """The adapter serving async callables (created on first use)."""
        if self._async is None:
            with self._lock:
                if self._async is None:
                    from limify.core.redis_adapter import RedisAsyncAdapter

                    self._async = RedisAsyncAdapter.from_url(self.url)
        return self._async

    def __repr__(self) -> str:
        return f"StorageURL({self.url!r})"


_urls: dict[str, StorageURL] = {}
_urls_lock = fork_safe_lock(sys.modules[__name__], "_urls_lock")


def storage_from_url(url: str) -> StorageURL:
    """The shared :class:`StorageURL` for ``url`` (one connection pool per URL and process)."""
    found = _urls.get(url)
    if found is None:
        with _urls_lock:
            found = _urls.get(url)
            if found is None:
                found = _urls[url] = StorageURL(url)
    return found


def check_storage(storage: Any) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``storage`` is a valid storage value."""
    if isinstance(storage, str):
        storage_from_url(storage)
    elif not isinstance(storage, (SyncStorage, AsyncStorage, StorageURL)):
        raise TypeError(
            "storage must be None, a storage URL ('memory://', 'redis://host:port/db') or an "
            f"adapter such as InMemoryAdapter or RedisSyncAdapter, got {storage!r}"
        )


def adapter_for(storage: Any, *, is_async: bool, on_storage_error: str | None = None) -> Any:
    """The adapter that serves a sync (or async) callable from ``storage``.

    With ``on_storage_error``, the adapter comes behind that failure policy
    (see :mod:`limify.core.resilience`); in-memory adapters never need one.

    Raises:
        TypeError: ``storage`` cannot serve that kind of callable, e.g. a
            :class:`~limify.core.redis_adapter.RedisSyncAdapter` on an async function.
    """
    check_storage(storage)
    if isinstance(storage, str):
        storage = storage_from_url(storage)
    if isinstance(storage, StorageURL):
        adapter: Any = storage.for_async() if is_async else storage.for_sync()
        return adapter if on_storage_error is None else guarded(adapter, on_storage_error)
    if is_async and not isinstance(storage, AsyncStorage):
        raise TypeError(
            f"{storage!r} only serves sync callables; an async function needs an async adapter "
            "(RedisAsyncAdapter, InMemoryAdapter) or a storage URL"
        )
    if not is_async and not isinstance(storage, SyncStorage):
        raise TypeError(
            f"{storage!r} only serves async callables; a sync function needs a sync adapter "
            "(RedisSyncAdapter, InMemoryAdapter) or a storage URL"
        )
    return storage if on_storage_error is None else guarded(storage, on_storage_error)


class Defaults:
    """The process-wide defaults; ``version`` moves at each change (limits compare it per call)."""

    def __init__(self) -> None:
        self.storage: StorageLike = "memory://"
        self.on_storage_error = "fail_closed"
        self.version = 0
        self.lock = fork_safe_lock(self, "lock")


#: The one :class:`Defaults` instance, changed by :func:`configure_default`.
DEFAULTS = Defaults()


def configure_default(storage: StorageLike | None = None, on_storage_error: str | None = None) -> None:
    """Change the process defaults (each validated first); ``None`` keeps a value."""
    if storage is not None:
        check_storage(storage)
    if on_storage_error is not None:
        check_policy(on_storage_error)
    with DEFAULTS.lock:
        if storage is not None:
            DEFAULTS.storage = storage
        if on_storage_error is not None:
            DEFAULTS.on_storage_error = on_storage_error
        DEFAULTS.version += 1


def default_storage() -> tuple[int, StorageLike, str]:
    """The default storage, the default failure policy, and their version."""
    return DEFAULTS.version, DEFAULTS.storage, DEFAULTS.on_storage_error
