"""The algorithm contract: a pure transition, its Lua twin, and thin shells.

Theory of operation
-------------------
An algorithm is one pure function, written twice::

    transition(state, now_us, plan, cost) -> Step

``state`` is whatever the algorithm keeps per key (``None`` for a key never
seen or expired); ``now_us`` is the time in integer microseconds; ``plan`` gives
``limit`` and ``period_us``. The transition reads no clock, takes no lock and
does no I/O. It returns a :data:`Step`::

    (allowed, remaining, reset_us, retry_us, new_state, ttl_us)

``ttl_us`` is how long ``new_state`` stays meaningful: after it, the state is
indistinguishable from ``None`` (a full bucket, an empty window), so storage may
drop it. TTLs only collect garbage; they never decide.

The Lua twin (``<name>.lua`` beside the Python module) defines ``load(key)``,
``transition(state, now, plan, cost)`` and ``save(key, state, ttl_us)``; the
shared ``driver.lua`` runs it over every limit of a call. The Python
:func:`run_limits` is the driver's twin. Storage adapters only move state: the
in-memory adapter runs :func:`run_limits` under a lock, Redis runs the script in
one EVALSHA. Differential tests bind each Python transition to its Lua twin.

All-or-nothing: a call is admitted only when every limit admits it; then every
new state is saved. A refused call saves nothing, so it consumes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from typing import Any, ClassVar, Protocol, runtime_checkable

from limify.core.plans import Plan
from limify.core.result import LimitationResult

__all__ = [
    "Step",
    "Outcome",
    "Transition",
    "AlgorithmSpec",
    "SyncStorage",
    "AsyncStorage",
    "run_limits",
    "to_result",
    "SyncAlgorithm",
    "AsyncAlgorithm",
    "CONSUME",
    "PEEK",
]

#: ``(allowed, remaining, reset_us, retry_us, new_state, ttl_us)``
Step = tuple[bool, int, int, int, Any, int]
#: ``(allowed, remaining, reset_us, retry_us, index of the deciding limit)``
Outcome = tuple[bool, int, int, int, int]
Transition = Callable[[Any, int, Plan, int], Step]

#: Modes of one run: consume the cost, or only report what a call would get.
CONSUME = "1"
PEEK = "0"

_US = 1_000_000.0


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm as storage adapters see it: a transition and its Lua twin."""

    name: str
    transition: Transition
    #: Package resource holding the Lua twin (``load``, ``transition``, ``save``).
    lua_resource: str

    @cached_property
    def script(self) -> str:
        """The full Lua script: shared prelude, the algorithm's twin, shared driver."""
        here = files("limify.core.algorithms")
        parts = ("prelude.lua", self.lua_resource, "driver.lua")
        return "\n".join(here.joinpath(part).read_text(encoding="utf-8") for part in parts)

    @staticmethod
    def script_args(plan: Plan) -> tuple[int, int]:
        """The per-limit ARGV the Lua twin reads as ``plan[1]``, ``plan[2]``."""
        return (plan.limit, plan.period_us)


def _more_restrictive(step: Step, best: Step) -> bool:
    # A refusal beats an admission; among refusals the longest wait wins; among
    # admissions the smallest remaining wins. Ties keep the earlier limit.
    if step[0] != best[0]:
        return not step[0]
    if not step[0]:
        return step[3] > best[3]
    return step[1] < best[1]


def run_limits(
    transition: Transition,
    states: Sequence[Any],
    now_us: int,
    plans: Sequence[Plan],
    cost: int,
) -> tuple[Outcome, list[Step]]:
    """Run ``transition`` over every limit of one call (twin of ``driver.lua``).

    Returns the most restrictive outcome and every limit's step; the caller saves
    the new states only when the outcome is an admission and the mode consumes.
    """
    steps = [transition(state, now_us, plan, cost) for state, plan in zip(states, plans, strict=False)]
    pick = 0
    for index in range(1, len(steps)):
        if _more_restrictive(steps[index], steps[pick]):
            pick = index
    best = steps[pick]
    allowed = all(step[0] for step in steps)
    return (allowed, best[1], best[2], best[3], pick), steps


def to_result(outcome: Outcome, plans: Sequence[Plan]) -> LimitationResult:
    """Turn a storage outcome into the public :class:`LimitationResult`."""
    allowed, remaining, reset_us, retry_us, index = outcome
    return LimitationResult(bool(allowed), int(remaining), plans[index].limit, reset_us / _US, retry_us / _US)


@runtime_checkable
class SyncStorage(Protocol):
    """Storage usable from synchronous code."""

    def execute(
        self,
        spec: AlgorithmSpec,
        keys: Sequence[str],
        plans: Sequence[Plan],
        cost: int,
        mode: str = CONSUME,
    ) -> Outcome:
        """Apply ``spec`` to ``keys`` (one per plan) atomically; see :func:`run_limits`."""
        ...

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the state of ``keys``."""
        ...


@runtime_checkable
class AsyncStorage(Protocol):
    """Storage usable from asynchronous code."""

    def execute_async(
        self,
        spec: AlgorithmSpec,
        keys: Sequence[str],
        plans: Sequence[Plan],
        cost: int,
        mode: str = CONSUME,
    ) -> Awaitable[Outcome]:
        """Awaitable twin of :meth:`SyncStorage.execute`."""
        ...

    def clear_async(self, keys: Sequence[str]) -> Awaitable[None]:
        """Awaitable twin of :meth:`SyncStorage.clear`."""
        ...


def _check_cost(cost: int) -> None:
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int >= 1, got {cost!r}")
    if cost < 1:
        raise ValueError(f"cost must be an int >= 1, got {cost!r}")


class SyncAlgorithm:
    """Synchronous shell: ``check(key, plan, cost)`` on a :class:`SyncStorage`."""

    spec: ClassVar[AlgorithmSpec]

    def __init__(self, adapter: SyncStorage) -> None:
        if not isinstance(adapter, SyncStorage):
            raise TypeError(
                f"{type(self).__name__} needs a storage adapter usable from sync code "
                f"(with execute()), got {adapter!r}"
            )
        self.adapter = adapter

    def check(self, key: str, plan: Plan, cost: int = 1) -> LimitationResult:
        """Consume ``cost`` from ``key`` under ``plan`` if it fits; report the decision."""
        _check_cost(cost)
        return to_result(self.adapter.execute(self.spec, (key,), (plan,), cost), (plan,))

    def peek(self, key: str, plan: Plan, cost: int = 1) -> LimitationResult:
        """The decision :meth:`check` would return now, consuming nothing."""
        _check_cost(cost)
        return to_result(self.adapter.execute(self.spec, (key,), (plan,), cost, PEEK), (plan,))

    def reset(self, key: str) -> None:
        """Forget ``key``'s state: its next call sees a fresh limit."""
        self.adapter.clear((key,))


class AsyncAlgorithm:
    """Asynchronous shell: ``await check(key, plan, cost)`` on an :class:`AsyncStorage`."""

    spec: ClassVar[AlgorithmSpec]

    def __init__(self, adapter: AsyncStorage) -> None:
        if not isinstance(adapter, AsyncStorage):
            raise TypeError(
                f"{type(self).__name__} needs a storage adapter usable from async code "
                f"(with execute_async()), got {adapter!r}"
            )
        self.adapter = adapter

    async def check(self, key: str, plan: Plan, cost: int = 1) -> LimitationResult:
        """Consume ``cost`` from ``key`` under ``plan`` if it fits; report the decision."""
        _check_cost(cost)
        return to_result(await self.adapter.execute_async(self.spec, (key,), (plan,), cost), (plan,))

    async def peek(self, key: str, plan: Plan, cost: int = 1) -> LimitationResult:
        """The decision :meth:`check` would return now, consuming nothing."""
        _check_cost(cost)
        outcome = await self.adapter.execute_async(self.spec, (key,), (plan,), cost, PEEK)
        return to_result(outcome, (plan,))

    async def reset(self, key: str) -> None:
        """Forget ``key``'s state: its next call sees a fresh limit."""
        await self.adapter.clear_async((key,))
