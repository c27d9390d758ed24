"""Memory per idle key: what one key costs after one admitted check.

Every key gets one admitted check under a plan of 100 per hour, so its state
stays live while the others are created (for lease algorithms such as
``concurrency``: one ``acquire``, so the key holds one lease).

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
from collections.abc import Callable
from typing import Any

from benchmarks.floors import FLOOR_SCRIPT, floor_script_check
from benchmarks.limify_contenders import holds_leases
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


def _one_call(algorithm: Any) -> Callable[[str, Plan], Any]:
    # A lease algorithm's idle key is one holding a lease (acquired, not yet released).
    return algorithm.acquire if holds_leases(algorithm) else algorithm.check  # type: ignore[no-any-return]


def _error_row(name: str, exc: Exception) -> dict[str, Any]:
    return {"name": f"limify {name}", "algorithm": name, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _in_process_row(name: str, sync_class: type[Any], keys: list[str]) -> dict[str, Any]:
    adapter = InMemoryAdapter(max_keys=max(len(keys), 1))
    call = _one_call(sync_class(adapter))
    call("warm-up", _PLAN)  # first-call caches are not per-key costs
    adapter.clear(["warm-up"])

    def run() -> None:
        for key in keys:
            call(key, _PLAN)

    used = _traced_bytes(run)
    return {
        "name": f"limify {name}",
        "algorithm": name,
        "bytes_per_key": used / len(keys),
        "key_string_bytes": sys.getsizeof(keys[0]),
        "error": None,
    }


def in_process(tag: str, n: int) -> list[dict[str, Any]]:
    """Bytes per idle key in an InMemoryAdapter, per algorithm, and for the dict floor."""
    rows = []
    keys = key_names(tag, "p", n)
    for name, (sync_class, _) in ALGORITHMS.items():
        try:
            rows.append(_in_process_row(name, sync_class, keys))
        except Exception as exc:  # reported in the row, like the latency sections do
            rows.append(_error_row(name, exc))
    holder: list[Any] = []
    used = _traced_bytes(lambda: holder.append(_floor_dict(keys)))
    rows.append(
        {
            "name": "floor: dict of (tokens, time) tuples",
            "algorithm": "",
            "bytes_per_key": used / n,
            "key_string_bytes": sys.getsizeof(keys[0]),
            "error": None,
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
        keys = key_names(tag, f"r{len(rows)}", n)
        try:
            call = _one_call(sync_class(adapter))
            call(keys[0], _PLAN)  # loads the script before measuring
            client.delete(keys[0])

            def fill(call: Any = call, keys: list[str] = keys) -> None:
                for key in keys:
                    call(key, _PLAN)

            figures = _redis_figures(client, keys, fill)
        except Exception as exc:
            rows.append(_error_row(name, exc))
            continue
        rows.append({"name": f"limify {name}", "algorithm": name, **figures, "error": None})
    sha = client.script_load(FLOOR_SCRIPT)
    call, head = floor_script_check(client, sha, MEMORY_LIMIT)
    keys = key_names(tag, "rf", n)

    def fill_floor() -> None:
        for key in keys:
            call(sha, 1, key, *head, time.time_ns() // 1_000_000)

    figures = _redis_figures(client, keys, fill_floor)
    rows.append({"name": "floor: EVALSHA hash {t, ts}", "algorithm": "", **figures, "error": None})
    return rows
