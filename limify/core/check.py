"""The Check: one decision to make, prepared before any I/O, and the store protocol that runs it.

Every entry point (``@rate_limit``, the web :class:`~limify.core.limiter.Limiter`,
the outbound gate, the algorithm shells) turns its call into one :class:`Check`,
with everything that could be settled settled at decoration or configuration
time; :mod:`limify.core.engine` runs it on a store.

A store implements :class:`SyncStore` and/or :class:`AsyncStore`: three
operations, each atomic on the store's side.

``execute(check) -> Outcome``
    Run ``check.spec``'s transition over ``check.keys`` (one per plan), all or
    nothing (see :func:`~limify.core.algorithms.base.run_limits`): the in-memory
    store runs the Python transition under a lock, Redis runs the Lua twin in one
    ``EVALSHA``; a store without scripts keeps each key's state as the text of
    ``check.spec.codec`` and runs the Python transition in a transaction. Every
    write ``run_limits`` returns is saved, refused checks' included (a penalty
    counts refusals that way, see :mod:`limify.core.algorithms.penalty`).
``clear(keys)``
    Forget the state of ``keys``.
``hold(key, ms) -> int``
    The outbound pause hold: with ``ms > 0``, make ``key`` paused for at least
    ``ms`` milliseconds from now (never shortening a longer pause); return the
    milliseconds the pause still has to run (0: not paused).

A store that cannot be reached raises :class:`limify.StorageError`; the failure
policies (:mod:`limify.core.resilience`) wrap stores, so the engine never sees
more than that one exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from limify.core.algorithms.base import CONSUME, PEEK, REFUND, AlgorithmSpec, Outcome
from limify.core.plan import Plan

__all__ = ["Check", "Pending", "SyncStore", "AsyncStore", "CONSUME", "PEEK", "REFUND", "CLEAR", "HOLD"]

#: Engine modes beyond the stores' ``execute`` (which sees only CONSUME, PEEK, REFUND).
CLEAR = "clear"
HOLD = "hold"


class Check(NamedTuple):
    """One decision: a store runs it atomically over all its keys.

    ``mode`` is :data:`CONSUME` (admit all-or-nothing), :data:`PEEK` (report only),
    :data:`REFUND` (give ``cost`` back, then report), or for the engine alone
    :data:`CLEAR` (forget ``keys``) and :data:`HOLD` (the outbound pause of
    ``keys[0]``, ``cost`` milliseconds). ``token`` names the call (a lease, or
    the entry a refund removes; ``""`` when unused). ``pause_key`` is the key of
    an upstream pause the engine checks before executing (outbound requests).
    """

    spec: AlgorithmSpec
    keys: tuple[str, ...]
    plans: tuple[Plan, ...]
    cost: int = 1
    mode: str = CONSUME
    token: str = ""
    pause_key: str | None = None


class Pending(NamedTuple):
    """A Check still waiting for one value, such as an async plan provider's answer.

    The engine awaits ``value`` when it is awaitable (async engines only), then
    runs ``complete(value)``; errors raised there go to the run's ``on_error``.
    """

    value: Any
    complete: Callable[[Any], Check]


@runtime_checkable
class SyncStore(Protocol):
    """A store usable from synchronous code (see the module docs)."""

    def execute(self, check: Check) -> Outcome:
        """Run ``check`` atomically; raise :class:`limify.StorageError` if the store is unreachable."""
        ...

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the state of ``keys``."""
        ...

    def hold(self, key: str, ms: int) -> int:
        """Pause ``key`` for at least ``ms`` ms (0: just read); the milliseconds left."""
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """A store usable from asynchronous code: the awaitable twins of :class:`SyncStore`."""

    def execute_async(self, check: Check) -> Awaitable[Outcome]:
        """Awaitable :meth:`SyncStore.execute`."""
        ...

    def clear_async(self, keys: Sequence[str]) -> Awaitable[None]:
        """Awaitable :meth:`SyncStore.clear`."""
        ...

    def hold_async(self, key: str, ms: int) -> Awaitable[int]:
        """Awaitable :meth:`SyncStore.hold`."""
        ...
