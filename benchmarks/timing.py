"""How latency is measured: warm-up, interleaved repeats, medians.

Every contender is reduced to one callable ``check(key) -> bool`` (``True``:
admitted), sync or async, built by :attr:`Contender.build` for a given limit.
The floors go through exactly the same shape, so the cost of the benchmark's
own loop and call is in every number alike and cancels out of the ratios.

One *batch* is: a fresh key, one untimed priming call (it creates whatever the
library builds per key and, on the rejected path, spends the only unit of a
limit of 1), then ``n`` timed calls on that key. The allowed path uses a limit
far above ``n``, so every timed call is admitted; the rejected path uses a
limit of 1 per hour, so every timed call is refused. A batch whose decisions
are not all the expected ones is counted in ``unexpected`` rather than hidden.

Batches last about the same *time* for every contender, not the same number
of calls: the first warm-up batch (``min_calls`` calls) measures the
contender, and ``n`` is then set so that a batch takes about ``target_ns``
(within ``min_calls .. max_calls``). On a shared machine a batch may be
preempted by another process; equal durations give every contender the same
exposure, where equal counts would let a slow contender's long batches be
preempted more often than a floor's short ones and skew the ratios.

A *repeat* runs one batch of every (contender, path) pair, in an order rotated
by one at each repeat, so that drift on a shared machine (another process
waking up, CPU frequency changes) lands on every contender alike. The reported
figure is the median of the repeats' ns/op; warm-up repeats are discarded.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from time import perf_counter_ns
from typing import Any

__all__ = [
    "ALLOWED_LIMIT",
    "REJECTED_LIMIT",
    "PERIOD_SECONDS",
    "PATHS",
    "Contender",
    "Batching",
    "Measured",
    "measure_sync",
    "measure_async",
    "summarise",
]

#: Limit of the allowed path: above any batch (at most 5,000 calls and the priming
#: one, each on a fresh key), so every timed call is admitted; no higher, since the
#: sliding log accepts at most 10,000 (its MAX_LOG_LIMIT).
ALLOWED_LIMIT = 10_000
#: Every plan in the benchmark is "<limit> per hour": nothing refills during a batch.
PERIOD_SECONDS = 3600
#: Limit of the rejected path: the priming call spends it, so every timed call is refused.
REJECTED_LIMIT = 1
#: (path, limit): the allowed path, then the rejected path.
PATHS = (("allowed", ALLOWED_LIMIT), ("rejected", REJECTED_LIMIT))

SyncCheck = Callable[[str], bool]
AsyncCheck = Callable[[str], Awaitable[bool]]


@dataclass
class Contender:
    """One thing being measured: a floor, a Limify entry point or a peer's limiter."""

    name: str
    #: "floor", "limify", or the peer's distribution name ("limits", ...).
    kind: str
    #: ``build(limit) -> check``: a fresh limiter for ``limit`` per hour, reduced to ``check(key)``.
    build: Callable[[int], Any]
    #: Limify's algorithm name (empty for floors and peers).
    algorithm: str = ""
    #: "shell" (the algorithm class) or "decorated" (``@rate_limit``) for Limify.
    via: str = ""
    #: False for floors that decide nothing (no-op, PING): they run the allowed path only.
    decides: bool = True
    #: The paths this contender can be timed on (see :data:`PATHS`).
    paths: tuple[str, ...] = ("allowed", "rejected")


@dataclass(frozen=True)
class Batching:
    """How long batches are and how many repeats run (see the module docs)."""

    target_ns: int
    min_calls: int
    max_calls: int
    warmup: int
    repeats: int

    def calls_for(self, per_op_ns: float) -> int:
        """Calls that make a batch last about :attr:`target_ns` at ``per_op_ns`` per call."""
        wanted = int(self.target_ns / max(per_op_ns, 1.0))
        return max(self.min_calls, min(self.max_calls, wanted))


@dataclass
class Measured:
    """The samples of one contender on one path."""

    contender: Contender
    path: str
    samples: list[float] = field(default_factory=list)
    unexpected: int = 0
    error: str | None = None
    #: Timed calls per batch, set by the first warm-up batch.
    calls: int = 0


def _expected(path: str, n: int) -> int:
    return n if path == "allowed" else 0


def _batch_sync(check: SyncCheck, key: str, n: int) -> tuple[float, int]:
    check(key)
    start = perf_counter_ns()
    admitted = sum(map(check, repeat(key, n)))
    return (perf_counter_ns() - start) / n, admitted


async def _batch_async(check: AsyncCheck, key: str, n: int) -> tuple[float, int]:
    await check(key)
    admitted = 0
    start = perf_counter_ns()
    for _ in repeat(None, n):
        if await check(key):
            admitted += 1
    return (perf_counter_ns() - start) / n, admitted


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class _Plan:
    """Which (contender, path) pairs run, in which rotated order, on which fresh keys."""

    def __init__(self, contenders: list[Contender], tag: str, batching: Batching) -> None:
        self.measured = [
            Measured(c, path, calls=batching.min_calls)
            for c in contenders
            for path, _ in PATHS
            if path in c.paths and (c.decides or path == "allowed")
        ]
        self.limits = {path: limit for path, limit in PATHS}
        self.tag = tag
        self.batching = batching
        self.batch = 0

    def steps(self) -> Iterator[tuple[int, Measured, bool, str]]:
        """(index, slot, is warm-up, fresh key) for every batch to run, in order."""
        count = len(self.measured)
        for number in range(max(1, self.batching.warmup) + self.batching.repeats):
            shift = number % count if count else 0
            for index in list(range(shift, count)) + list(range(shift)):
                slot = self.measured[index]
                if slot.error is None:
                    # Alphanumeric only, so no library pays for escaping it; unique per batch.
                    self.batch += 1
                    yield (
                        index,
                        slot,
                        number < max(1, self.batching.warmup),
                        f"{self.tag}k{index}b{self.batch}",
                    )

    def record(self, slot: Measured, warm: bool, per_op: float, admitted: int) -> None:
        if admitted != _expected(slot.path, slot.calls):
            slot.unexpected += 1
        if warm:
            slot.calls = self.batching.calls_for(per_op)
        else:
            slot.samples.append(per_op)

    def build(self, index: int) -> Any:
        slot = self.measured[index]
        try:
            return slot.contender.build(self.limits[slot.path])
        except Exception as exc:  # a broken contender is reported, not fatal
            slot.error = _error(exc)
            return None


def measure_sync(contenders: list[Contender], tag: str, batching: Batching) -> list[Measured]:
    """Measure sync contenders; see the module docs for the protocol."""
    plan = _Plan(contenders, tag, batching)
    checks = [plan.build(index) for index in range(len(plan.measured))]
    gc.collect()
    for index, slot, warm, key in plan.steps():
        try:
            per_op, admitted = _batch_sync(checks[index], key, slot.calls)
        except Exception as exc:
            slot.error = _error(exc)
            continue
        plan.record(slot, warm, per_op, admitted)
    return plan.measured


async def measure_async(contenders: list[Contender], tag: str, batching: Batching) -> list[Measured]:
    """Measure async contenders in the running event loop; see the module docs."""
    plan = _Plan(contenders, tag, batching)
    checks = [plan.build(index) for index in range(len(plan.measured))]
    gc.collect()
    for index, slot, warm, key in plan.steps():
        try:
            per_op, admitted = await _batch_async(checks[index], key, slot.calls)
        except Exception as exc:
            slot.error = _error(exc)
            continue
        plan.record(slot, warm, per_op, admitted)
    return plan.measured


def summarise(samples: list[float]) -> dict[str, float | None]:
    """Median and quartiles of ``samples`` (``None`` when there are none)."""
    if not samples:
        return {"median": None, "q1": None, "q3": None}
    if len(samples) == 1:
        return {"median": samples[0], "q1": samples[0], "q3": samples[0]}
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return {"median": statistics.median(samples), "q1": q1, "q3": q3}
