"""Limify's contenders: every registered algorithm, through its shell and through ``@rate_limit``.

The algorithms come from :data:`limify.core.algorithms.ALGORITHMS`, so one added
to the registry is benchmarked without touching this file.

* *shell*: ``TokenBucketAlgorithm(adapter).check(key, plan)``, the algorithm class
  on an adapter, as in README's "The algorithm contract". Algorithms whose calls
  hold a lease (``concurrency``: ``acquire``/``release`` instead of ``check``) are
  timed as one ``acquire`` followed, when admitted, by its ``release`` (on the
  rejected path the priming call keeps its lease, so the slot stays taken);
* *decorated*: ``@rate_limit(plan, key="user", algorithm=name)`` on a function
  doing nothing, called as ``endpoint(key)``; a refusal is the
  ``RateLimitExceeded`` it raises. In memory it uses the process default storage
  (``memory://``, what ``@rate_limit`` without ``storage=`` gets); on Redis it uses
  ``storage="redis://..."``, so Limify builds its own clients as an application's
  would. A decorated lease algorithm releases its slot when the call returns, so
  calls made one after another are never refused: it has no rejected path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.timing import PERIOD_SECONDS, REJECTED_LIMIT, Contender
from limify import InMemoryAdapter, Plan, RateLimitExceeded, rate_limit
from limify.core.algorithms import ALGORITHMS
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter

__all__ = [
    "memory_sync",
    "memory_async",
    "redis_sync",
    "redis_async",
    "store_sync",
    "store_async",
    "plan_for",
    "holds_leases",
    "shell_call_sync",
    "shell_call_async",
]


def plan_for(limit: int) -> Plan:
    """The plan of every Limify contender: ``limit`` per :data:`PERIOD_SECONDS`."""
    return Plan("bench", limit, PERIOD_SECONDS)


def holds_leases(algorithm: Any) -> bool:
    """True for algorithms whose calls hold a lease (``acquire``/``release``), like ``concurrency``."""
    return callable(getattr(algorithm, "acquire", None)) and callable(getattr(algorithm, "release", None))


def shell_call_sync(algorithm: Any, *, release: bool = True) -> Callable[[str, Plan], bool]:
    """One call through the shell: ``check``, or ``acquire`` then (if ``release``) ``release``."""
    if not holds_leases(algorithm):
        check_ = algorithm.check

        def check(key: str, plan: Plan) -> bool:
            return check_(key, plan).allowed  # type: ignore[no-any-return]

        return check
    acquire, give_back = algorithm.acquire, algorithm.release

    def acquire_release(key: str, plan: Plan) -> bool:
        result, token = acquire(key, plan)
        if result.allowed and release:
            give_back(key, plan, token)
        return result.allowed  # type: ignore[no-any-return]

    return acquire_release


def shell_call_async(algorithm: Any, *, release: bool = True) -> Callable[[str, Plan], Awaitable[bool]]:
    """Awaitable twin of :func:`shell_call_sync`."""
    if not holds_leases(algorithm):
        check_ = algorithm.check

        async def check(key: str, plan: Plan) -> bool:
            return (await check_(key, plan)).allowed  # type: ignore[no-any-return]

        return check
    acquire, give_back = algorithm.acquire, algorithm.release

    async def acquire_release(key: str, plan: Plan) -> bool:
        result, token = await acquire(key, plan)
        if result.allowed and release:
            await give_back(key, plan, token)
        return result.allowed  # type: ignore[no-any-return]

    return acquire_release


def _shell_sync(algorithm_class: type[Any], make_adapter: Callable[[], Any]) -> Callable[[int], Any]:
    def build(limit: int) -> Callable[[str], bool]:
        # On the rejected path the priming call keeps its lease, so the slot stays taken.
        call = shell_call_sync(algorithm_class(make_adapter()), release=limit != REJECTED_LIMIT)
        plan = plan_for(limit)

        def check(key: str) -> bool:
            return call(key, plan)

        return check

    return build


def _shell_async(algorithm_class: type[Any], make_adapter: Callable[[], Any]) -> Callable[[int], Any]:
    def build(limit: int) -> Callable[[str], Awaitable[bool]]:
        call = shell_call_async(algorithm_class(make_adapter()), release=limit != REJECTED_LIMIT)
        plan = plan_for(limit)

        async def check(key: str) -> bool:
            return await call(key, plan)

        return check

    return build


def _decorated_sync(algorithm: str, storage: Any, tag: str) -> Callable[[int], Any]:
    def build(limit: int) -> Callable[[str], bool]:
        @rate_limit(plan_for(limit), key="user", algorithm=algorithm, storage=storage, name=f"{tag}{limit}")
        def endpoint(user: str) -> None:
            return None

        def check(key: str) -> bool:
            try:
                endpoint(key)
            except RateLimitExceeded:
                return False
            return True

        return check

    return build


def _decorated_async(algorithm: str, storage: Any, tag: str) -> Callable[[int], Any]:
    def build(limit: int) -> Callable[[str], Awaitable[bool]]:
        @rate_limit(plan_for(limit), key="user", algorithm=algorithm, storage=storage, name=f"{tag}{limit}")
        async def endpoint(user: str) -> None:
            return None

        async def check(key: str) -> bool:
            try:
                await endpoint(key)
            except RateLimitExceeded:
                return False
            return True

        return check

    return build


def _pair(
    name: str, algorithm_class: type[Any], shell: Callable[[int], Any], decorated: Callable[[int], Any]
) -> list[Contender]:
    leases = holds_leases(algorithm_class)
    # A decorated lease algorithm releases its slot when the call returns, so calls
    # made one after another are never refused: only its allowed path exists.
    decorated_paths = ("allowed",) if leases else ("allowed", "rejected")
    return [
        Contender(
            f"limify {name} ({'acquire+release' if leases else 'shell'})",
            "limify",
            shell,
            algorithm=name,
            via="shell",
        ),
        Contender(
            f"limify {name} (@rate_limit)",
            "limify",
            decorated,
            algorithm=name,
            via="decorated",
            paths=decorated_paths,
        ),
    ]


def memory_sync(tag: str) -> list[Contender]:
    """Every algorithm in memory, sync."""
    contenders = []
    for name, (sync_class, _) in ALGORITHMS.items():
        shell = _shell_sync(sync_class, InMemoryAdapter)
        contenders += _pair(name, sync_class, shell, _decorated_sync(name, None, f"{tag}ms{name}"))
    return contenders


def memory_async(tag: str) -> list[Contender]:
    """Every algorithm in memory, async."""
    contenders = []
    for name, (_, async_class) in ALGORITHMS.items():
        shell = _shell_async(async_class, InMemoryAdapter)
        contenders += _pair(name, async_class, shell, _decorated_async(name, None, f"{tag}ma{name}"))
    return contenders


def redis_sync(tag: str, url: str, client: Any) -> list[Contender]:
    """Every algorithm on Redis through a sync client (the shells share ``client``)."""
    return store_sync(f"{tag}rs", url, RedisSyncAdapter(client))


def redis_async(tag: str, url: str, client: Any) -> list[Contender]:
    """Every algorithm on Redis through redis.asyncio (the shells share ``client``)."""
    return store_async(f"{tag}ra", url, RedisAsyncAdapter(client))


def store_sync(tag: str, url: str, adapter: Any) -> list[Contender]:
    """Every algorithm on another store (PostgreSQL, Memcached): shells on ``adapter``, decorated by ``url``."""
    contenders = []
    for name, (sync_class, _) in ALGORITHMS.items():
        shell = _shell_sync(sync_class, lambda: adapter)
        contenders += _pair(name, sync_class, shell, _decorated_sync(name, url, f"{tag}{name}"))
    return contenders


def store_async(tag: str, url: str, adapter: Any) -> list[Contender]:
    """:func:`store_sync` from async code."""
    contenders = []
    for name, (_, async_class) in ALGORITHMS.items():
        shell = _shell_async(async_class, lambda: adapter)
        contenders += _pair(name, async_class, shell, _decorated_async(name, url, f"{tag}{name}"))
    return contenders
