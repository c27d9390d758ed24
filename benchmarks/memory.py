"""Memory per idle key: what one key costs after one admitted check.

Every key gets one admitted check under a plan of 100 per hour, so its state
stays live while the others are created.

In process: ``tracemalloc`` counts what an :class:`~limify.InMemoryAdapter`
keeps after ``n`` distinct keys each got one check, divided by ``n``. The key
strings are made before tracing starts (the caller owns them; their size is
reported apart), so the figure is the adapter's own cost: its dict entry, the
stored state and expiry. A dict grows by doubling, so the figure depends a
little on where ``n`` falls between two sizes.

In Redis: ``MEMORY USAGE <key> SAMPLES 0`` (the key's own accounting, key name
included) averaged over the keys, and the growth of ``used_memory`` per key
(which adds the keyspace and expiry dict entries). Both beside the floor's
two-field hash under the same key names.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from typing import Any

from benchmarks.floors import FLOOR_SCRIPT, floor_script_check
from benchmarks.timing import PERIOD_SECONDS
from limify import InMemoryAdapter
from limify.core.algorithms import ALGORITHMS
from limify.core.plans import Plan
from limify.core.redis_adapter import RedisSyncAdapter

__all__ = ["in_process", "in_redis", "key_names"]

#: 100 per hour: one check leaves a state that stays live (not back to fresh) for
#: at least 36 s, so no key expires while the others are being created.
MEMORY_LIMIT = 100
_PLAN = Plan("default", MEMORY_LIMIT, PERIOD_SECONDS)


def key_names(tag: str, prefix: str, n: int) -> list[str]:
    """``n`` key names shaped like the decorator's (``limify:<scope>:<plan>:<identity>``)."""
    return [f"limify:app.views.items:default:{tag}{prefix}u{i:07d}" for i in range(n)]


def _traced_bytes(run: Any) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _floor_dict(keys: list[str]) -> dict[str, tuple[float, float]]:
    buckets: dict[str, tuple[float, float]] = {}
    now = time.monotonic()
    for key in keys:
        buckets[key] = (MEMORY_LIMIT - 1.0, now + 0.0)
    return buckets


def in_process(tag: str, n: int) -> list[dict[str, Any]]:
    """Bytes per idle key in an InMemoryAdapter, per algorithm, and for the dict floor."""
    rows = []
    keys = key_names(tag, "p", n)
    key_bytes = sys.getsizeof(keys[0])
    for name, (sync_class, _) in ALGORITHMS.items():
        adapter = InMemoryAdapter(max_keys=max(n, 1))
        algorithm = sync_class(adapter)
        algorithm.check("warm-up", _PLAN)  # first-call caches are not per-key costs
        adapter.clear(["warm-up"])
        check = algorithm.check

        def run(check: Any = check) -> None:
            for key in keys:
                check(key, _PLAN)

        used = _traced_bytes(run)
        rows.append(
            {
                "name": f"limify {name}",
                "algorithm": name,
                "bytes_per_key": used / n,
                "key_string_bytes": key_bytes,
            }
        )
        del adapter, algorithm, check
    holder: list[Any] = []
    used = _traced_bytes(lambda: holder.append(_floor_dict(keys)))
    rows.append(
        {
            "name": "floor: dict of (tokens, time) tuples",
            "algorithm": "",
            "bytes_per_key": used / n,
            "key_string_bytes": key_bytes,
        }
    )
    return rows


def _redis_figures(client: Any, keys: list[str], fill: Any) -> dict[str, Any]:
    before = int(client.info("memory")["used_memory"])
    fill()
    after = int(client.info("memory")["used_memory"])
    sample = keys[:: max(1, len(keys) // 200)]
    pipe = client.pipeline(transaction=False)
    for key in sample:
        pipe.memory_usage(key, samples=0)
    usages = [u for u in pipe.execute() if u is not None]
    client.delete(*keys)
    usage = sum(usages) / len(usages) if usages else None
    return {
        "memory_usage_bytes": usage,
        "bytes_beyond_key_name": None if usage is None else usage - len(keys[0]),
        "used_memory_growth_per_key": (after - before) / len(keys),
        "key_name_bytes": len(keys[0]),
        "keys_found": len(usages),
        "keys_sampled": len(sample),
    }


def in_redis(client: Any, tag: str, n: int) -> list[dict[str, Any]]:
    """Per-key memory in Redis, per algorithm (server clock), and for the floor script's hash."""
    rows: list[dict[str, Any]] = []
    adapter = RedisSyncAdapter(client)
    for name, (sync_class, _) in ALGORITHMS.items():
        algorithm = sync_class(adapter)
        keys = key_names(tag, f"r{len(rows)}", n)
        algorithm.check(keys[0], _PLAN)  # loads the script before measuring
        client.delete(keys[0])

        def fill(algorithm: Any = algorithm, keys: list[str] = keys) -> None:
            for key in keys:
                algorithm.check(key, _PLAN)

        rows.append({"name": f"limify {name}", "algorithm": name, **_redis_figures(client, keys, fill)})
    sha = client.script_load(FLOOR_SCRIPT)
    call, head = floor_script_check(client, sha, MEMORY_LIMIT)
    keys = key_names(tag, "rf", n)

    def fill_floor() -> None:
        for key in keys:
            call(sha, 1, key, *head, time.time_ns() // 1_000_000)

    rows.append(
        {"name": "floor: EVALSHA hash {t, ts}", "algorithm": "", **_redis_figures(client, keys, fill_floor)}
    )
    return rows
