"""The peers: ``limits``, ``pyrate-limiter`` and ``throttled-py``, each as its docs suggest.

Installed by the ``bench`` extra; when one is missing its rows are left out and
the report says so. Each peer gets its own client (one per section), built the
way its documentation builds one; every plan is ``<limit>`` per
:data:`~benchmarks.timing.PERIOD_SECONDS`; calls never block (a refusal returns
at once).

``pyrate-limiter``'s "sliding log" is its default log bucket (``InMemoryBucket``,
``RedisBucket``), its "token bucket" a ``StateBucket`` with ``TokenBucket`` (in
memory, or on a ``RedisStateStore``). It routes every name to one bucket unless
given a bucket factory, so :class:`_PerKeyFactory` gives each key its own bucket, created by
the untimed priming call. Background leaking is not scheduled: with hour-long
windows it would trim nothing during a batch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Awaitable, Callable
from datetime import timedelta
from inspect import isawaitable
from typing import Any

from benchmarks.timing import PERIOD_SECONDS, Contender

__all__ = ["PEERS", "installed_peers", "memory_sync", "memory_async", "redis_sync", "redis_async"]

#: Distribution name -> importable module.
PEERS = {"limits": "limits", "pyrate-limiter": "pyrate_limiter", "throttled-py": "throttled"}

_LIMITS_STRATEGIES = (
    ("fixed window", "FixedWindowRateLimiter"),
    ("moving window", "MovingWindowRateLimiter"),
    ("sliding window counter", "SlidingWindowCounterRateLimiter"),
)
_THROTTLED_TYPES = ("token_bucket", "gcra", "fixed_window", "sliding_window", "leaking_bucket")


def installed_peers() -> dict[str, str | None]:
    """Each peer's installed version, or ``None`` when it is not importable."""
    found: dict[str, str | None] = {}
    for dist, module in PEERS.items():
        found[dist] = importlib.metadata.version(dist) if importlib.util.find_spec(module) else None
    return found


# limits ---------------------------------------------------------------------------


def _limits_item(limit: int) -> Any:
    from limits import RateLimitItemPerSecond

    return RateLimitItemPerSecond(limit, PERIOD_SECONDS)


def _limits(make_storage: Callable[[], Any], is_async: bool) -> list[Contender]:
    from limits import strategies
    from limits.aio import strategies as aio_strategies

    module = aio_strategies if is_async else strategies
    contenders = []
    for label, class_name in _LIMITS_STRATEGIES:
        strategy = getattr(module, class_name)

        def build(limit: int, strategy: Any = strategy) -> Any:
            hit = strategy(make_storage()).hit
            item = _limits_item(limit)
            if is_async:

                async def check_async(key: str) -> bool:
                    return bool(await hit(item, key))

                return check_async

            def check(key: str) -> bool:
                return bool(hit(item, key))

            return check

        contenders.append(Contender(f"limits {label}", "limits", build))
    return contenders


# pyrate-limiter -------------------------------------------------------------------


def _pyrate_factory_class() -> type[Any]:
    from pyrate_limiter import BucketFactory, RateItem

    class _PerKeyFactory(BucketFactory):
        """One bucket per item name, made by ``make(name)`` (which may return an awaitable)."""

        def __init__(self, make: Callable[[str], Any], clock: Any) -> None:
            self._make = make
            self._clock = clock
            self._buckets: dict[str, Any] = {}

        def wrap_item(self, name: str, weight: int = 1) -> Any:
            return RateItem(name, self._clock.now(), weight=weight)

        def get(self, item: Any) -> Any:
            bucket = self._buckets.get(item.name)
            if bucket is not None:
                return bucket
            made = self._make(item.name)
            if isawaitable(made):

                async def remember() -> Any:
                    bucket = self._buckets[item.name] = await made
                    return bucket

                return remember()
            self._buckets[item.name] = made
            return made

    return _PerKeyFactory


def _pyrate(kinds: list[tuple[str, Callable[[Any, str], Any], Any]], is_async: bool) -> list[Contender]:
    """``kinds``: (label, make(rates, key) -> bucket, clock)."""
    from pyrate_limiter import Limiter, Rate

    factory_class = _pyrate_factory_class()
    contenders = []
    for label, make, clock in kinds:

        def build(limit: int, make: Any = make, clock: Any = clock) -> Any:
            rates = [Rate(limit, PERIOD_SECONDS * 1000)]
            limiter = Limiter(factory_class(lambda key: make(rates, key), clock))
            if is_async:
                acquire_async = limiter.try_acquire_async

                async def check_async(key: str) -> bool:
                    return bool(await acquire_async(key, blocking=False))

                return check_async
            acquire = limiter.try_acquire

            def check(key: str) -> bool:
                return bool(acquire(key, blocking=False))

            return check

        contenders.append(Contender(f"pyrate-limiter {label}", "pyrate-limiter", build))
    return contenders


def _pyrate_memory(is_async: bool) -> list[Contender]:
    from pyrate_limiter import InMemoryBucket, MonotonicClock, StateBucket, TokenBucket

    return _pyrate(
        [
            ("sliding log", lambda rates, key: InMemoryBucket(rates), MonotonicClock()),
            (
                "token bucket",
                lambda rates, key: StateBucket(rates, algorithm=TokenBucket()),
                MonotonicClock(),
            ),
        ],
        is_async,
    )


def _pyrate_redis(client: Any, is_async: bool) -> list[Contender]:
    from pyrate_limiter import RedisBucket, RedisStateStore, StateBucket, TokenBucket, WallClock

    return _pyrate(
        [
            (
                "sliding log",
                lambda rates, key: RedisBucket.init(rates, client, key),
                WallClock(),
            ),
            (
                "token bucket",
                lambda rates, key: StateBucket(
                    rates, algorithm=TokenBucket(), store=RedisStateStore(client, key)
                ),
                WallClock(),
            ),
        ],
        is_async,
    )


# throttled-py ---------------------------------------------------------------------


def _throttled(make_store: Callable[[], Any], is_async: bool) -> list[Contender]:
    import throttled
    import throttled.asyncio

    module: Any = throttled.asyncio if is_async else throttled
    contenders = []
    for kind in _THROTTLED_TYPES:

        def build(limit: int, kind: str = kind) -> Any:
            quota = throttled.rate_limiter.per_duration(timedelta(seconds=PERIOD_SECONDS), limit)
            limit_call = module.Throttled(using=kind, quota=quota, store=make_store()).limit
            if is_async:

                async def check_async(key: str) -> bool:
                    return not (await limit_call(key)).limited

                return check_async

            def check(key: str) -> bool:
                return not limit_call(key).limited

            return check

        contenders.append(Contender(f"throttled-py {kind.replace('_', ' ')}", "throttled-py", build))
    return contenders


def _throttled_client(store: Any) -> Any:
    # throttled-py has no public close(); its backend hands out the client it made.
    return store._backend.get_client()


# sections -------------------------------------------------------------------------


def memory_sync(available: set[str]) -> list[Contender]:
    contenders: list[Contender] = []
    if "limits" in available:
        from limits.storage import MemoryStorage

        contenders += _limits(MemoryStorage, is_async=False)
    if "pyrate-limiter" in available:
        contenders += _pyrate_memory(is_async=False)
    if "throttled-py" in available:
        from throttled import MemoryStore

        contenders += _throttled(MemoryStore, is_async=False)
    return contenders


def memory_async(available: set[str]) -> list[Contender]:
    contenders: list[Contender] = []
    if "limits" in available:
        from limits.aio.storage import MemoryStorage

        contenders += _limits(MemoryStorage, is_async=True)
    if "pyrate-limiter" in available:
        contenders += _pyrate_memory(is_async=True)
    if "throttled-py" in available:
        from throttled.asyncio import MemoryStore

        contenders += _throttled(MemoryStore, is_async=True)
    return contenders


def redis_sync(
    available: set[str], url: str, client: Any, closers: list[Callable[[], Any]]
) -> list[Contender]:
    """Peers on Redis, sync; pyrate-limiter takes ``client``, the others build their own."""
    contenders: list[Contender] = []
    if "limits" in available:
        from limits.storage import RedisStorage

        storage = RedisStorage(url)
        contenders += _limits(lambda: storage, is_async=False)
    if "pyrate-limiter" in available:
        contenders += _pyrate_redis(client, is_async=False)
    if "throttled-py" in available:
        from throttled import RedisStore

        store = RedisStore(server=url)
        closers.append(lambda: _throttled_client(store).close())
        contenders += _throttled(lambda: store, is_async=False)
    return contenders


def redis_async(
    available: set[str], url: str, client: Any, closers: list[Callable[[], Awaitable[Any]]]
) -> list[Contender]:
    """Peers on Redis, async; call inside the event loop that will run them."""
    contenders: list[Contender] = []
    if "limits" in available:
        from limits.aio.storage import RedisStorage

        storage = RedisStorage(f"async+{url}", implementation="redispy")
        contenders += _limits(lambda: storage, is_async=True)
    if "pyrate-limiter" in available:
        contenders += _pyrate_redis(client, is_async=True)
    if "throttled-py" in available:
        from throttled.asyncio import RedisStore

        store = RedisStore(server=url)
        closers.append(lambda: _throttled_client(store).aclose())
        contenders += _throttled(lambda: store, is_async=True)
    return contenders
