"""The engine: runs one prepared :class:`~limify.core.check.Check` on a store.

Every entry point prepares a Check (purely, with everything settled at
decoration or configuration time) and hands it to an :class:`Engine`, which
does the rest, the same way for all of them:

* **execute** the Check on the store, atomically over all its keys;
* apply the **failure policy** while the store is unreachable (the routing of
  :class:`~limify.core.resilience.GuardedStorage`: one probe at a time, the
  others answered at once);
* answer a **refusal** as the entry point asked: return it (web rules, the
  algorithm shells), raise :class:`~limify.RateLimitExceeded`, or wait and try
  again (``time.sleep`` / ``anyio.sleep``) within ``max_wait``; a lease polls,
  since a release may free a slot long before the leases expire;
* check an upstream **pause** first (outbound requests: ``Check.pause_key``);
* **give back** (mode REFUND: a released lease, a refunded call) shielded from
  cancellation, and release a lease whose acquire was cancelled after it was sent.

:meth:`Engine.run` and :meth:`Engine.run_async` are the only hand-written
sync/async pair above the stores: they differ in ``await`` and in cancellation,
and share every decision through the helpers below. Entry points stay
sync/async agnostic by calling :attr:`Engine.runner` (one of the two) with a
``finish(check, answer)`` callback that turns the store's answer into what they
return; ``on_error(check, error)`` may answer a StorageError or PlanError instead
of raising it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import anyio

from limify import events
from limify.core.algorithms.base import Outcome, to_result
from limify.core.answers import FIRST_POLL, LONGEST_POLL, RAISE, RETURN, WAIT, Breach, Settings, settle
from limify.core.answers import storage_failure
from limify.core.check import CLEAR, CONSUME, HOLD, REFUND, Check, Pending
from limify.core.refusals import cache_of
from limify.core.resilience import FALLBACK, GuardedStorage
from limify.core.storage import DEFAULTS, StorageLike, adapter_for, default_storage, is_private_memory
from limify.errors import PlanError, StorageError

__all__ = [
    "Engine",
    "ready",
    "Settings",
    "RETURN",
    "RAISE",
    "WAIT",
    "DEFAULT_POLICY",
    "FIRST_POLL",
    "LONGEST_POLL",
    "keep",
    "as_result",
    "log_give_back_failure",
]

log = logging.getLogger("limify")

#: ``policy=`` value meaning "follow :func:`limify.configure`" (``None``: no failure policy).
DEFAULT_POLICY = "default"

Finish = Callable[[Check, Any], Any]
#: ``on_error(check, error)``: ``check`` is still a :class:`~limify.core.check.Pending` when
#: completing it failed (a plan provider's plan the check cannot run under).
OnError = Callable[[Any, Exception], Any]
_NO_SCOPE = contextlib.nullcontext()


def keep(check: Check, answer: Any) -> Any:
    """The ``finish`` that returns the store's answer as it is."""
    return answer


def as_result(check: Check, outcome: Outcome) -> Any:
    """The ``finish`` that turns an outcome into a :class:`~limify.LimitationResult`."""
    return to_result(outcome, check.plans)


def log_give_back_failure(check: Check, error: Exception) -> None:
    """The ``on_error`` of a give-back: the call's own outcome wins; the lease or cost ages out."""
    log.warning("limify: could not give back the cost of a call to %s: %s", check.keys, error)


class Engine:
    """Runs checks on one storage under one failure policy (see the module docs).

    Args:
        storage: a URL or adapter; ``None`` follows :func:`limify.configure`.
        is_async: whether checks run from async code (:meth:`run_async`).
        policy: ``"fail_open"``, ``"fail_closed"``, ``"local"``, :data:`DEFAULT_POLICY`
            (follow :func:`limify.configure`) or ``None`` (none: storage errors raise).
        refusal: :data:`RETURN`, :data:`RAISE` or :data:`WAIT`.
        max_wait: with :data:`WAIT`, the longest total wait before raising (``None``: no bound).
        name: the limit's name in decision events.
        source: where its decisions are made, for events (see :data:`limify.events.SOURCES`).
        shadow: ``True``: refusals are recorded but let through; ``None``: follow
            :func:`limify.configure` (``False`` initially).
        on_breach: called with the event of each refused call.
        cache_refusals: answer refusals known to hold in process while the store is
            remote (see :mod:`limify.core.refusals`).
        own_memory: the store an unnamed ``memory://`` stands for (a
            :class:`~limify.Limify`'s own, see :func:`~limify.core.storage.is_private_memory`);
            ``None``: the process-wide one.
    """

    __slots__ = ("is_async", "settings", "runner", "_storage", "_policy", "_follows",
                 "_version", "_adapter", "_guard", "_shields", "_own_memory", "_layout")  # fmt: skip

    def __init__(
        self,
        storage: StorageLike | None,
        *,
        is_async: bool,
        policy: str | None = DEFAULT_POLICY,
        refusal: str = RETURN,
        max_wait: float | None = None,
        name: str = "",
        source: str = "shell",
        shadow: bool | None = False,
        on_breach: Breach | None = None,
        cache_refusals: bool = False,
        own_memory: Any = None,
    ) -> None:
        self.is_async = is_async
        self._own_memory = own_memory
        self.settings = Settings(refusal, max_wait, name, source, shadow, on_breach, cache_refusals)
        #: :meth:`run_async` for async engines, else :meth:`run`: what entry points call.
        self.runner: Callable[..., Any] = self.run_async if is_async else self.run
        self._storage = storage
        self._policy = policy
        #: Whether the store is re-resolved when the process defaults change: those of
        #: :func:`limify.configure`, and the store :func:`limify.testing.isolated` puts
        #: every declared limit on (a shell bound to its adapter, ``policy=None``, keeps it).
        self._follows = policy is not None
        self._version = -1
        self._adapter: Any = None
        self._guard: GuardedStorage | None = None
        self._shields = False
        self._layout: tuple[bool, ...] = ()
        if storage is not None:
            adapter_for(storage, is_async=is_async)  # a sync-only adapter on async code: TypeError now
        if not self._follows:
            self._bind(adapter_for(storage, is_async=is_async))

    def _bind(self, store: Any) -> None:
        if isinstance(store, GuardedStorage):
            self._guard, self._adapter = store, store.adapter
        else:
            self._guard, self._adapter = None, store
        if self._layout:
            _check_layout(self._adapter, self._layout)
        local = getattr(self._adapter, "never_suspends", False)
        # A give-back on a store that may suspend (I/O) is shielded from cancellation.
        self._shields = self.is_async and not local
        settings = self.settings
        clock = getattr(self._adapter, "clock", None)  # a store on the caller's clock: the cache follows it
        now_us = getattr(clock, "now_us", None)
        settings.cache = cache_of(self._adapter, now_us) if settings.caches else None

    def _follow_defaults(self) -> None:
        version, storage, policy = default_storage()
        if DEFAULTS.override is not None:
            self._bind(DEFAULTS.override)
        else:
            own_policy = self._policy
            chosen = self._storage if self._storage is not None else storage
            if self._own_memory is not None and is_private_memory(chosen):
                chosen = self._own_memory
            self._bind(
                adapter_for(
                    chosen,
                    is_async=self.is_async,
                    on_storage_error=policy if own_policy == DEFAULT_POLICY else own_policy,
                )
            )
        self._version = version

    def check_layout(self, shared: Sequence[bool]) -> None:
        """Let the store refuse limits it cannot check atomically: now, and whenever the store changes.

        ``shared[i]``: whether the state of the checks' limit ``i`` is shared beyond
        the caller (a ``GlobalLimit``, an application-wide limit). A store may define
        ``check_layout(shared)`` raising ``ValueError`` (Memcached: one item per check).
        """
        self._layout = tuple(shared)
        store = self.store  # resolved now, so that a refusal is raised where the limit is declared
        _check_layout(self._adapter if store is self._guard else store, self._layout)

    @property
    def store(self) -> Any:
        """The store checks run on now (behind its failure policy, if any)."""
        if self._follows and self._version != DEFAULTS.version:
            self._follow_defaults()
        return self._adapter if self._guard is None else self._guard

    def run(self, check: Check | Pending, finish: Finish = keep, on_error: OnError | None = None) -> Any:
        """Run ``check`` (see the module docs) and return ``finish(check, answer)``."""
        if self._follows and self._version != DEFAULTS.version:
            self._follow_defaults()
        adapter, guard, settings = self._adapter, self._guard, self.settings
        started = time.perf_counter() if events.listeners or settings.on_breach else 0.0
        try:
            if type(check) is Pending:
                check = check.complete(check.value)
            check = cast(Check, check)
            mode = check.mode
            cache = settings.cache
            if cache is not None and mode != CONSUME:
                cache.forget(check.keys)  # a refund or reset here may admit a refused call sooner
            if mode == CLEAR or mode == HOLD:
                store = adapter if guard is None else guard
                answer = store.clear(check.keys) if mode == CLEAR else store.hold(check.keys[0], check.cost)
                return finish(check, answer)
            waited, tries = 0.0, 0
            while True:
                key, ok = check.pause_key, True
                paused = 0 if key is None else (adapter if guard is None else guard).hold(key, 0)
                known = (
                    None
                    if cache is None or mode != CONSUME or not cache.held
                    else cache.known(check.keys, check.cost)
                )
                if paused > 0:
                    outcome = _paused(paused)
                elif known is not None:
                    outcome, key = known, None
                elif guard is None:
                    outcome, key = adapter.execute(check), None
                else:
                    route, key = guard.route(), None
                    if route == FALLBACK:
                        outcome, ok = guard.fallback(None, check), False
                    else:
                        try:
                            outcome = adapter.execute(check)
                        except StorageError as error:
                            guard.failed(error, route)
                            outcome, ok = guard.fallback(error, check), False
                        except BaseException:
                            guard.abandoned(route)
                            raise
                        else:
                            guard.succeeded(route)
                settled = settle(settings, check, outcome, key, ok, started, waited, tries, known is None)
                if type(settled) is not float:
                    return finish(check, settled)
                time.sleep(settled)
                waited += settled
                tries += 1
        except (StorageError, PlanError) as error:
            storage_failure(settings, check, started)
            if on_error is None:
                raise
            return on_error(check, error)

    async def run_async(
        self, check: Check | Pending, finish: Finish = keep, on_error: OnError | None = None
    ) -> Any:
        """Awaitable twin of :meth:`run`; also shields give-backs and releases cancelled acquires."""
        if self._follows and self._version != DEFAULTS.version:
            self._follow_defaults()
        adapter, guard, settings = self._adapter, self._guard, self.settings
        started = time.perf_counter() if events.listeners or settings.on_breach else 0.0
        sent = False  # a CONSUME is on its way to the store
        try:
            if type(check) is Pending:
                value = check.value
                check = check.complete(await value if inspect.isawaitable(value) else value)
            check = cast(Check, check)
            mode = check.mode
            cache = settings.cache
            if cache is not None and mode != CONSUME:
                cache.forget(check.keys)  # a refund or reset here may admit a refused call sooner
            if mode == CLEAR or mode == HOLD:
                store = adapter if guard is None else guard
                if mode == CLEAR:
                    return finish(check, await store.clear_async(check.keys))
                return finish(check, await store.hold_async(check.keys[0], check.cost))
            waited, tries = 0.0, 0
            with anyio.CancelScope(shield=True) if mode == REFUND and self._shields else _NO_SCOPE:
                while True:
                    key, ok = check.pause_key, True
                    paused = (
                        0 if key is None else await (adapter if guard is None else guard).hold_async(key, 0)
                    )
                    known = (
                        None
                        if cache is None or mode != CONSUME or not cache.held
                        else cache.known(check.keys, check.cost)
                    )
                    sent = mode == CONSUME and known is None
                    if paused > 0:
                        outcome = _paused(paused)
                    elif known is not None:
                        outcome, key = known, None
                    elif guard is None:
                        outcome, key = await adapter.execute_async(check), None
                    else:
                        route, key = guard.route(), None
                        if route == FALLBACK:
                            outcome, ok = guard.fallback(None, check), False
                        else:
                            try:
                                outcome = await adapter.execute_async(check)
                            except StorageError as error:
                                guard.failed(error, route)
                                outcome, ok = guard.fallback(error, check), False
                            except BaseException:
                                guard.abandoned(route)
                                raise
                            else:
                                guard.succeeded(route)
                    sent = False
                    settled = settle(settings, check, outcome, key, ok, started, waited, tries, known is None)
                    if type(settled) is not float:
                        return finish(check, settled)
                    await anyio.sleep(settled)
                    waited += settled
                    tries += 1
        except (StorageError, PlanError) as error:
            storage_failure(settings, check, started)
            if on_error is None:
                raise
            return on_error(check, error)
        except anyio.get_cancelled_exc_class():
            if sent and cast(Check, check).spec.lease:
                # The acquire may have run on the store: release it, or nobody ever will.
                await self.run_async(cast(Check, check)._replace(mode=REFUND), on_error=log_give_back_failure)
            raise


def _check_layout(adapter: Any, shared: tuple[bool, ...]) -> None:
    hook = getattr(adapter, "check_layout", None)
    if hook is not None:
        hook(shared)


def _paused(ms: int) -> Outcome:
    """A refusal for an upstream pause of ``ms`` milliseconds still to run."""
    return Outcome(False, 0, ms * 1000, ms * 1000, 0, 0)


async def _resolved(value: Any) -> Any:
    return value


def ready(is_async: bool, value: Any) -> Any:
    """``value``, or an awaitable of it for async callers: the answer of a call with nothing to
    check (switched off, exempt, no rule), given in the form the caller's engine answers in."""
    return _resolved(value) if is_async else value
