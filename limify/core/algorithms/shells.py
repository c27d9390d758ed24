"""Algorithm shells: ``check(key, plan, cost)`` on a store, sync or async, written once.

A shell prepares one :class:`~limify.core.check.Check` per call and runs it
through an :class:`~limify.core.engine.Engine` bound to the shell's adapter (no
failure policy: an unreachable store raises :class:`limify.StorageError`;
refusals are returned, never raised). :class:`SyncAlgorithm` returns results,
:class:`AsyncAlgorithm` awaitables of them; both share every method body, since
the engine's :attr:`~limify.core.engine.Engine.runner` is ``run`` or
``run_async``. Each algorithm module declares its pair in two lines::

    class TokenBucketAlgorithm(SyncAlgorithm):
        spec = TOKEN_BUCKET
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from limify.core.algorithms.base import CONSUME, PEEK, REFUND, AlgorithmSpec, Outcome, check_cost, to_result
from limify.core.check import CLEAR, AsyncStore, Check, SyncStore
from limify.core.engine import Engine, as_result
from limify.core.plan import Plan
from limify.core.result import LimitationResult

__all__ = ["SyncAlgorithm", "AsyncAlgorithm", "check_keys"]

# What the shell's methods return: values (sync) or awaitables of them (async).
ResultT = TypeVar("ResultT")
DecisionT = TypeVar("DecisionT")
OutcomeT = TypeVar("OutcomeT")
NoneT = TypeVar("NoneT")


def check_keys(keys: Sequence[str], plans: Sequence[Plan]) -> None:
    """Raise ``ValueError`` unless there is one distinct key per plan."""
    if len(keys) != len(plans) or not keys:
        raise ValueError(f"need one key per plan, got {len(keys)} keys for {len(plans)} plans")
    if len(keys) > 1 and len(set(keys)) != len(keys):
        raise ValueError(f"each limit needs its own key; got {list(keys)!r}")


def _decision(check: Check, outcome: Outcome) -> tuple[LimitationResult, int]:
    return to_result(outcome, check.plans), outcome.decided_by


class _Shell(Generic[ResultT, DecisionT, OutcomeT, NoneT]):
    """The methods both shells share (see the module docs)."""

    spec: ClassVar[AlgorithmSpec]
    _is_async: ClassVar[bool]

    def __init__(self, adapter: Any) -> None:
        kind, protocol = ("async", AsyncStore) if self._is_async else ("sync", SyncStore)
        if not isinstance(adapter, protocol):
            method = "execute_async()" if self._is_async else "execute()"
            raise TypeError(
                f"{type(self).__name__} needs a storage adapter usable from {kind} code "
                f"(with {method}), got {adapter!r}"
            )
        self.adapter = adapter
        self._run = Engine(adapter, is_async=self._is_async, policy=None).runner

    def _check(self, keys: Sequence[str], plans: Sequence[Plan], cost: int, mode: str, token: str) -> Check:
        check_keys(keys, plans)
        check_cost(cost, plans)
        self.spec.check_plans(plans)
        return Check(self.spec, tuple(keys), tuple(plans), cost, mode, token)

    def decide(
        self, keys: Sequence[str], plans: Sequence[Plan], cost: int = 1, mode: str = CONSUME, token: str = ""
    ) -> DecisionT:
        """Like :meth:`check_all`, also returning the index of the deciding limit."""
        return cast(DecisionT, self._run(self._check(keys, plans, cost, mode, token), _decision))

    def run(
        self, keys: Sequence[str], plans: Sequence[Plan], cost: int, mode: str = CONSUME, token: str = ""
    ) -> OutcomeT:
        """The raw :class:`~limify.core.algorithms.base.Outcome`, without argument checks.

        For callers that validated keys, plans and cost once, at set-up; others
        use :meth:`check_all`.
        """
        return cast(OutcomeT, self._run(Check(self.spec, tuple(keys), tuple(plans), cost, mode, token)))

    def check_all(
        self, keys: Sequence[str], plans: Sequence[Plan], cost: int = 1, mode: str = CONSUME, token: str = ""
    ) -> ResultT:
        """Run one mode over several limits at once, atomically: every limit must admit.

        One key per plan; the result is the most restrictive limit's.
        """
        return cast(ResultT, self._run(self._check(keys, plans, cost, mode, token), as_result))

    def check(self, key: str, plan: Plan, cost: int = 1) -> ResultT:
        """Consume ``cost`` from ``key`` under ``plan`` if it fits; report the decision."""
        return self.check_all((key,), (plan,), cost)

    def peek(self, key: str, plan: Plan, cost: int = 1) -> ResultT:
        """The decision :meth:`check` would return now, consuming nothing."""
        return self.check_all((key,), (plan,), cost, PEEK)

    def refund(self, key: str, plan: Plan, cost: int = 1) -> ResultT:
        """Give ``cost`` back to ``key``; report what a call would get afterwards."""
        return self.check_all((key,), (plan,), cost, REFUND)

    def reset(self, key: str) -> NoneT:
        """Forget ``key``'s state: its next call sees a fresh limit."""
        return self.reset_all((key,))

    def reset_all(self, keys: Sequence[str]) -> NoneT:
        """Forget the state of every key in ``keys``."""
        return cast(NoneT, self._run(Check(self.spec, tuple(keys), (), 0, CLEAR)))


class SyncAlgorithm(_Shell[LimitationResult, tuple[LimitationResult, int], Outcome, None]):
    """Synchronous shell: ``check(key, plan, cost)`` on a sync store (memory or Redis)."""

    _is_async = False


class AsyncAlgorithm(
    _Shell[
        Awaitable[LimitationResult],
        Awaitable[tuple[LimitationResult, int]],
        Awaitable[Outcome],
        Awaitable[None],
    ]
):
    """Asynchronous shell: ``await check(key, plan, cost)`` on an async store (memory or redis.asyncio)."""

    _is_async = True
