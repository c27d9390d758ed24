"""Reference floors: the least a keyed rate-limit check can cost, written here.

They are not libraries and not meant for use: no validation, no metadata, no
retry-after, no TTL bookkeeping beyond what Redis needs. They tell how far a
library is from "one dict lookup under a lock" in memory and from "one
EVALSHA of a three-command script" on Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.timing import PERIOD_SECONDS, Contender

__all__ = [
    "FLOOR_SCRIPT",
    "memory_sync_floors",
    "memory_async_floors",
    "redis_sync_floors",
    "redis_async_floors",
    "floor_script_check",
]

#: A minimal token bucket in Lua: a hash {t = tokens, ts = last refill in ms},
#: HMGET, refill, HSET + PEXPIRE when admitted. ARGV: capacity, tokens per ms, now in ms.
FLOOR_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1]) or capacity
local last = tonumber(state[2]) or now
if now > last then tokens = math.min(capacity, tokens + (now - last) * rate) end
if tokens < 1 then return 0 end
redis.call('HSET', KEYS[1], 't', tokens - 1, 'ts', math.max(now, last))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens + 1) / rate) + 1)
return 1
"""


def _noop(limit: int) -> Callable[[str], bool]:
    def check(key: str) -> bool:
        return True

    return check


def _dict_bucket(limit: int) -> Callable[[str], bool]:
    rate = limit / PERIOD_SECONDS
    buckets: dict[str, tuple[float, float]] = {}
    clock = time.monotonic

    def check(key: str) -> bool:
        now = clock()
        state = buckets.get(key)
        tokens = limit if state is None else min(limit, state[0] + (now - state[1]) * rate)
        if tokens >= 1:
            buckets[key] = (tokens - 1, now)
            return True
        return False

    return check


def _locked_dict_bucket(limit: int) -> Callable[[str], bool]:
    rate = limit / PERIOD_SECONDS
    buckets: dict[str, tuple[float, float]] = {}
    clock = time.monotonic
    lock = threading.Lock()

    def check(key: str) -> bool:
        with lock:
            now = clock()
            state = buckets.get(key)
            tokens = limit if state is None else min(limit, state[0] + (now - state[1]) * rate)
            if tokens >= 1:
                buckets[key] = (tokens - 1, now)
                return True
            return False

    return check


def _async_noop(limit: int) -> Callable[[str], Awaitable[bool]]:
    async def check(key: str) -> bool:
        return True

    return check


def _async_dict_bucket(limit: int) -> Callable[[str], Awaitable[bool]]:
    # One event loop runs one check at a time between awaits: no lock needed.
    rate = limit / PERIOD_SECONDS
    buckets: dict[str, tuple[float, float]] = {}
    clock = time.monotonic

    async def check(key: str) -> bool:
        now = clock()
        state = buckets.get(key)
        tokens = limit if state is None else min(limit, state[0] + (now - state[1]) * rate)
        if tokens >= 1:
            buckets[key] = (tokens - 1, now)
            return True
        return False

    return check


#: Names of the floor each section's ratios are taken against.
MEMORY_SYNC_FLOOR = "dict token bucket + threading.Lock"
MEMORY_ASYNC_FLOOR = "async dict token bucket"
REDIS_SYNC_FLOOR = "EVALSHA token bucket (redis-py)"
REDIS_ASYNC_FLOOR = "EVALSHA token bucket (redis.asyncio)"


def memory_sync_floors() -> list[Contender]:
    return [
        Contender("no-op call", "floor", _noop, decides=False),
        Contender("dict token bucket, no lock", "floor", _dict_bucket),
        Contender(MEMORY_SYNC_FLOOR, "floor", _locked_dict_bucket),
    ]


def memory_async_floors() -> list[Contender]:
    return [
        Contender("await no-op", "floor", _async_noop, decides=False),
        Contender(MEMORY_ASYNC_FLOOR, "floor", _async_dict_bucket),
    ]


def floor_script_check(client: Any, sha: str, limit: int) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """``(evalsha, fixed ARGV head)`` of the floor script for ``limit`` per period."""
    rate = limit / (PERIOD_SECONDS * 1000)
    return client.evalsha, (limit, repr(rate))


def redis_sync_floors(client: Any) -> list[Contender]:
    """PING and the floor script on one ``redis.Redis`` client."""
    sha = client.script_load(FLOOR_SCRIPT)

    def ping(limit: int) -> Callable[[str], bool]:
        send = client.ping

        def check(key: str) -> bool:
            return bool(send())

        return check

    def evalsha(limit: int) -> Callable[[str], bool]:
        call, head = floor_script_check(client, sha, limit)

        def check(key: str) -> bool:
            return bool(call(sha, 1, key, *head, time.time_ns() // 1_000_000) == 1)

        return check

    return [
        Contender("redis-py PING", "floor", ping, decides=False),
        Contender(REDIS_SYNC_FLOOR, "floor", evalsha),
    ]


def redis_async_floors(client: Any, sha: str) -> list[Contender]:
    """PING and the floor script on one ``redis.asyncio.Redis`` client (script loaded as ``sha``)."""

    def ping(limit: int) -> Callable[[str], Awaitable[bool]]:
        send = client.ping

        async def check(key: str) -> bool:
            return bool(await send())

        return check

    def evalsha(limit: int) -> Callable[[str], Awaitable[bool]]:
        call, head = floor_script_check(client, sha, limit)

        async def check(key: str) -> bool:
            return bool(await call(sha, 1, key, *head, time.time_ns() // 1_000_000) == 1)

        return check

    return [
        Contender("redis.asyncio PING", "floor", ping, decides=False),
        Contender(REDIS_ASYNC_FLOOR, "floor", evalsha),
    ]
