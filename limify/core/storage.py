"""Storage resolution: a registry of URL schemes, adapters, and the process default.

A storage URL stands for the stores its scheme's factory builds, lazily, and
shared by every limit that names the same URL: one for sync callables and one
for async callables, or a single store serving both (``memory://`` is one
:class:`~limify.InMemoryAdapter`). Schemes are registered, not hard-wired::

    register_scheme("etcd", build_etcd_store, check=check_etcd_url)

``build(url, is_async=...)`` returns a store (:class:`~limify.core.check.SyncStore`
or :class:`~limify.core.check.AsyncStore`); ``check(url)`` validates a URL without
connecting, so a bad one fails where it is configured.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, Union
from urllib.parse import urlsplit

from limify.core.check import AsyncStore, SyncStore
from limify.core.forksafe import OnePer, fork_safe_lock
from limify.core.memcached_protocol import check_url as check_memcached_url
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.postgres_sql import SCHEMES as POSTGRES_SCHEMES
from limify.core.postgres_sql import check_url as check_postgres_url
from limify.core.redis_clients import SCHEMES as REDIS_SCHEMES
from limify.core.redis_clients import check_url
from limify.core.resilience import guarded

__all__ = [
    "StorageLike",
    "StorageURL",
    "register_scheme",
    "registered_schemes",
    "storage_from_url",
    "adapter_for",
    "check_storage",
    "is_private_memory",
    "default_storage",
    "Defaults",
    "DEFAULTS",
    "SCHEMES",
]

#: What ``storage=`` accepts: a URL, or an adapter instance.
StorageLike = Union[str, SyncStore, AsyncStore]


class Scheme(NamedTuple):
    """How one URL scheme's stores are built (see :func:`register_scheme`)."""

    build: Callable[..., Any]
    check: Callable[[str], Any] | None


_schemes: dict[str, Scheme] = {}


def register_scheme(
    scheme: str, build: Callable[..., Any], *, check: Callable[[str], Any] | None = None
) -> None:
    """Make ``<scheme>://...`` storage URLs build their stores with ``build(url, is_async=...)``.

    Registering a scheme again replaces it for URLs resolved afterwards.

    Raises:
        TypeError: ``build`` or ``check`` is not callable.
        ValueError: ``scheme`` is not a lowercase URL scheme.
    """
    if not isinstance(scheme, str) or not scheme or scheme != scheme.lower() or "://" in scheme:
        raise ValueError(f"scheme must be a lowercase URL scheme such as 'memcached', got {scheme!r}")
    if not callable(build) or (check is not None and not callable(check)):
        raise TypeError(f"register_scheme({scheme!r}) needs a callable build (and check), got {build!r}")
    _schemes[scheme] = Scheme(build, check)


def registered_schemes() -> tuple[str, ...]:
    """The URL schemes storage URLs may use, in the order they were registered."""
    return tuple(_schemes)


def _build_memory(url: str, *, is_async: bool) -> InMemoryAdapter:
    return InMemoryAdapter()


def _build_redis(url: str, *, is_async: bool) -> Any:
    from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter

    return RedisAsyncAdapter.from_url(url) if is_async else RedisSyncAdapter.from_url(url)


def _build_postgres(url: str, *, is_async: bool) -> Any:
    from limify.core.postgres_adapter import PostgresAsyncAdapter, PostgresSyncAdapter

    return PostgresAsyncAdapter.from_url(url) if is_async else PostgresSyncAdapter.from_url(url)


def _build_memcached(url: str, *, is_async: bool) -> Any:
    from limify.core.memcached_adapter import MemcachedAsyncAdapter, MemcachedSyncAdapter

    return MemcachedAsyncAdapter.from_url(url) if is_async else MemcachedSyncAdapter.from_url(url)


register_scheme("memory", _build_memory)
for _scheme in REDIS_SCHEMES:
    register_scheme(_scheme, _build_redis, check=check_url)
for _scheme in POSTGRES_SCHEMES:
    register_scheme(_scheme, _build_postgres, check=check_postgres_url)
register_scheme("memcached", _build_memcached, check=check_memcached_url)

#: The schemes Limify registers itself (see :func:`registered_schemes` for all).
SCHEMES = registered_schemes()


class StorageURL:
    """A storage URL and the stores it stands for (see module docs)."""

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"storage URL must be a str, got {url!r}")
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
        found = _schemes.get(scheme)
        if found is None:
            raise ValueError(
                f"unsupported storage URL {url!r}: expected one of "
                + ", ".join(f"'{name}://...'" for name in _schemes)
            )
        if found.check is not None:
            found.check(url)
        self.url = url
        self.scheme = scheme
        self._build = found.build
        self._lock = fork_safe_lock(self)
        self._sync: Any = None
        self._async: Any = None

    def _store(self, is_async: bool) -> Any:
        with self._lock:
            store = self._async if is_async else self._sync
            if store is None:
                store = self._build(self.url, is_async=is_async)
                # A store serving both kinds of code is shared by both.
                if is_async or isinstance(store, AsyncStore):
                    self._async = self._async or store
                if not is_async or isinstance(store, SyncStore):
                    self._sync = self._sync or store
            return store

    def for_sync(self) -> Any:
        """The store serving sync callables (built on first use)."""
        return self._sync if self._sync is not None else self._store(False)

    def for_async(self) -> Any:
        """The store serving async callables (built on first use)."""
        return self._async if self._async is not None else self._store(True)

    def __repr__(self) -> str:
        return f"StorageURL({self.url!r})"


_urls: OnePer[str, StorageURL] = OnePer({})
#: Every private in-memory store (each :class:`~limify.Limify`'s own), so that
#: :func:`limify.testing.reset_all` reaches them too.
private_stores: weakref.WeakSet[InMemoryAdapter] = weakref.WeakSet()


def storage_from_url(url: str) -> StorageURL:
    """The shared :class:`StorageURL` for ``url`` (one connection pool per URL and process)."""
    return _urls.get(url, lambda: StorageURL(url))


def is_private_memory(storage: Any) -> bool:
    """Whether ``storage`` is the unnamed ``memory://``, which each :class:`~limify.Limify` keeps for itself.

    ``memory://<name>`` is one store per name and process, shared by every limit
    naming it; ``@rate_limit``'s unnamed ``memory://`` is one store per process.
    """
    return isinstance(storage, str) and storage.strip().lower() == "memory://"


def check_storage(storage: Any) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``storage`` is a valid storage value."""
    if isinstance(storage, str):
        storage_from_url(storage)
    elif not isinstance(storage, (SyncStore, AsyncStore, StorageURL)):
        raise TypeError(
            "storage must be None, a storage URL ('memory://', 'redis://host:port/db') or an "
            "adapter such as InMemoryAdapter or RedisSyncAdapter (a store with execute(check), "
            f"clear(keys) and hold(key, ms), or their _async twins), got {storage!r}"
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
    if is_async and not isinstance(storage, AsyncStore):
        raise TypeError(
            f"{storage!r} only serves sync callables; an async function needs an async adapter "
            "(RedisAsyncAdapter, InMemoryAdapter) or a storage URL"
        )
    if not is_async and not isinstance(storage, SyncStore):
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
        #: Whether limits declared without ``shadow=`` record refusals but let calls through.
        self.shadow = False
        #: Nesting depth of :func:`limify.testing.disabled`: above 0, nothing is refused.
        self.unenforced = 0
        #: A store every limit uses instead of its own (:func:`limify.testing.isolated`).
        self.override: Any = None
        #: ``False``: every limit admits every call uncounted (``configure(enabled=False)``).
        self.enabled = True
        self.version = 0
        self.lock = fork_safe_lock(self, "lock")


#: The one :class:`Defaults` instance, changed by :func:`limify.configure`.
DEFAULTS = Defaults()


def default_storage() -> tuple[int, StorageLike, str]:
    """The default storage, the default failure policy, and their version."""
    return DEFAULTS.version, DEFAULTS.storage, DEFAULTS.on_storage_error
