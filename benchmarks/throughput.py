"""Async throughput: many concurrent tasks sharing one limiter (and its one client).

Each contender is built once for the allowed limit. A round gives every task
its own fresh key, primes all keys concurrently (untimed), then times ``tasks``
tasks each running ``per_task`` checks back to back on its key; throughput is
``tasks * per_task`` over the wall time of the whole gather. Rounds rotate the
contender order like the latency repeats; the median round is reported.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter_ns

from benchmarks.timing import ALLOWED_LIMIT, Contender

__all__ = ["Throughput", "measure_throughput"]

AsyncCheck = Callable[[str], Awaitable[bool]]


@dataclass
class Throughput:
    """The rounds of one contender: checks per second, and refusals where all should pass."""

    contender: Contender
    samples: list[float] = field(default_factory=list)
    unexpected: int = 0
    error: str | None = None


async def _worker(check: AsyncCheck, key: str, count: int) -> int:
    admitted = 0
    for _ in range(count):
        if await check(key):
            admitted += 1
    return admitted


async def _round(check: AsyncCheck, keys: list[str], per_task: int) -> tuple[float, int]:
    await asyncio.gather(*(check(key) for key in keys))
    start = perf_counter_ns()
    admitted = await asyncio.gather(*(_worker(check, key, per_task) for key in keys))
    elapsed_s = (perf_counter_ns() - start) / 1e9
    return len(keys) * per_task / elapsed_s, sum(admitted)


async def measure_throughput(
    contenders: list[Contender], tag: str, tasks: int, per_task: int, warmup: int, repeats: int
) -> list[Throughput]:
    """Checks per second of each contender under ``tasks`` concurrent tasks."""
    results = [Throughput(c) for c in contenders]
    checks: dict[int, AsyncCheck] = {}
    for index, result in enumerate(results):
        try:
            checks[index] = result.contender.build(ALLOWED_LIMIT)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:300]
    count = len(results)
    for number in range(warmup + repeats):
        shift = number % count if count else 0
        gc.collect()
        for index in list(range(shift, count)) + list(range(shift)):
            result = results[index]
            if result.error is not None:
                continue
            keys = [f"{tag}t{index}r{number}x{task}" for task in range(tasks)]
            try:
                rate, admitted = await _round(checks[index], keys, per_task)
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if admitted != tasks * per_task:
                result.unexpected += 1
            if number >= warmup:
                result.samples.append(rate)
    return results
