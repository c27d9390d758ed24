"""In-process storage: runs the Python transitions under one lock."""

from __future__ import annotations

import time as _time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, Protocol, overload

from limify.core.algorithms.base import AlgorithmSpec, Outcome, StepTuple, run_limits
from limify.core.check import Check
from limify.core.clock import SYSTEM_CLOCK, Clock, SystemClock
from limify.core.forksafe import fork_safe_lock
from limify.core.plan import Plan
from limify.core.refusals import forget_cleared

__all__ = ["InMemoryAdapter", "DEFAULT_MAX_KEYS", "Run"]


class Run(Protocol):
    """What :meth:`InMemoryAdapter.runner` returns: a check of one key, or a release."""

    @overload
    def __call__(self, key: str, token: str = "", release: Literal[False] = False) -> StepTuple: ...
    @overload
    def __call__(self, key: str, token: str, release: Literal[True]) -> None: ...


#: Default bound on the number of keys one :class:`InMemoryAdapter` holds.
DEFAULT_MAX_KEYS = 1_000_000
#: Beyond this many outbound pauses, ended ones are swept when a new one starts.
_SWEEP_PAUSES_ABOVE = 1024


class InMemoryAdapter:
    """Thread-safe in-process storage for every algorithm, from sync and async code.

    One lock guards one ordered dict of ``key -> (state, expires_at_us)``; there are
    no threads or timers. A key whose state has expired reads as fresh and is
    dropped when met. The dict is kept in least-recently-used order: when a new
    key would exceed ``max_keys``, expired keys at the old end go first, then the
    least recently used live key, whose limit then starts afresh. Live keys are
    only evicted when more than ``max_keys`` distinct keys are in use at once.

    Args:
        max_keys: most keys held at once (>= 1).
        clock: where ``now`` comes from; tests pass a :class:`~limify.ManualClock`.
    """

    #: Its async methods never await anything, so no cancellation can cut one short.
    never_suspends = True

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS, clock: Clock = SYSTEM_CLOCK) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int):
            raise TypeError(f"max_keys must be an int >= 1, got {max_keys!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be an int >= 1, got {max_keys!r}")
        if not callable(getattr(clock, "now_us", None)):
            raise TypeError(f"clock must have a now_us() method, got {clock!r}")
        self.max_keys = max_keys
        self.clock = clock
        self._data: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        #: Outbound pauses: key -> end of the pause (µs, on ``clock``).
        self._pauses: dict[str, int] = {}
        self._lock = fork_safe_lock(self)

    def __len__(self) -> int:
        """Number of keys currently held (expired ones included until met)."""
        return len(self._data)

    def __repr__(self) -> str:
        return f"InMemoryAdapter(max_keys={self.max_keys}, clock={self.clock!r})"

    def _load(self, key: str, now: int) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return entry[0]

    def _store(self, key: str, state: Any, ttl_us: int, now: int) -> None:
        data = self._data
        if ttl_us <= 0:
            data.pop(key, None)
            return
        if key not in data:
            self._make_room(now)
        # A new key lands at the recent end; an existing one was moved there by _load.
        data[key] = (state, now + ttl_us)

    def _make_room(self, now: int) -> None:
        data = self._data
        # Amortised sweep: each new key retires up to two expired ones from the old end.
        for _ in range(2):
            if not data:
                return
            oldest = next(iter(data))
            if data[oldest][1] > now:
                break
            del data[oldest]
        while len(data) >= self.max_keys:
            data.popitem(last=False)

    def execute(self, check: Check) -> Outcome:
        """Run ``check`` over its keys in one lock section, all or nothing."""
        keys = check.keys
        with self._lock:
            now = self.clock.now_us()
            states = [self._load(key, now) for key in keys]
            outcome, writes = run_limits(
                check.spec, states, now, check.plans, check.cost, check.mode, check.token
            )
            for index, state, ttl in writes:
                self._store(keys[index], state, ttl, now)
            return outcome

    def runner(self, spec: AlgorithmSpec, plan: Plan, cost: int) -> Run:
        """The hot path of one-key checks: ``run(key)`` CONSUMEs ``cost`` under ``plan``.

        It decides exactly as :meth:`execute` would for ``Check(spec, (key,), (plan,),
        cost)``, and returns the transition's :data:`~limify.core.algorithms.base.StepTuple`,
        without building a Check or an Outcome per call (``@rate_limit`` uses it for
        limits with one plan, one key and a fixed cost). ``run(key, token)`` runs the
        check under a call token (a lease's name); ``run(key, token, True)`` is the
        REFUND of that token instead (a lease's release), and returns ``None``.
        """
        transition, give_back = spec.transition, spec.refund
        now_us, data, make_room = self.clock.now_us, self._data, self._make_room
        # The system clock's now_us() written out (no frame per call); time.time_ns is looked
        # up at each call, as SystemClock does, so that freezegun's patch applies.
        system = type(self.clock) is SystemClock

        # _load and _store written out, and the lock taken without a with-block (about
        # half the instructions): this is the hot path of every decorated call.
        def run(key: str, token: str = "", release: bool = False) -> StepTuple | None:
            lock = self._lock  # read at each call: a forked child gets a fresh lock
            lock.acquire()
            try:
                now = _time.time_ns() // 1000 if system else now_us()
                entry = data.get(key)
                if entry is None:
                    state = None
                elif entry[1] <= now:
                    del data[key]
                    entry = state = None
                else:
                    data.move_to_end(key)
                    state = entry[0]
                if release:
                    state, ttl = give_back(state, now, plan, cost, token)
                    step = None
                else:
                    step = transition(state, now, plan, cost, token)
                    if not step[0]:
                        return step
                    state, ttl = step[4], step[5]
                if ttl <= 0:
                    data.pop(key, None)
                else:
                    if entry is None:  # a new key lands at the recent end
                        make_room(now)
                    data[key] = (state, now + ttl)
                return step
            finally:
                lock.release()

        return run  # type: ignore[return-value]

    async def execute_async(self, check: Check) -> Outcome:
        """Same as :meth:`execute`; it never blocks on I/O, so it is safe in any event loop."""
        return self.execute(check)

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the state of ``keys``."""
        with self._lock:
            for key in keys:
                self._data.pop(key, None)
        forget_cleared(self, keys)

    def forget_all(self) -> None:
        """Forget every key and every outbound pause (:func:`limify.testing.reset_all`)."""
        with self._lock:
            self._data.clear()
            self._pauses.clear()
        forget_cleared(self)

    async def clear_async(self, keys: Sequence[str]) -> None:
        """Same as :meth:`clear`."""
        self.clear(keys)

    def hold(self, key: str, ms: int) -> int:
        """The outbound pause of ``key`` (``pause.lua``'s twin; see the store protocol)."""
        with self._lock:
            now = self.clock.now_us()
            pauses = self._pauses
            left_us = pauses.get(key, now) - now
            if ms > 0 and ms * 1000 > left_us:
                if len(pauses) > _SWEEP_PAUSES_ABOVE:
                    self._pauses = pauses = {k: until for k, until in pauses.items() if until > now}
                pauses[key] = now + ms * 1000
                return ms
            if left_us <= 0:
                pauses.pop(key, None)
                return 0
            return -(-left_us // 1000)  # whole ms, rounded up: never report a pause as over early

    async def hold_async(self, key: str, ms: int) -> int:
        """Same as :meth:`hold`."""
        return self.hold(key, ms)
