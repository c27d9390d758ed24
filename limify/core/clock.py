"""Clocks: where algorithms get ``now`` from.

Every transition takes ``now`` as an argument, in whole microseconds since the
Unix epoch. Integers keep time arithmetic exact, so "call again at ``now +
retry_after``" lands exactly where the algorithm said, and they stay exact in
Lua, whose numbers are doubles (2**53 microseconds is 285 years).
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "ManualClock", "SYSTEM_CLOCK"]


class Clock(Protocol):
    """Anything that tells the time in integer microseconds since the epoch."""

    def now_us(self) -> int:
        """Return the current time in microseconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock (``time.time_ns``), which freezegun can travel."""

    __slots__ = ()

    def now_us(self) -> int:
        """Return the wall-clock time in microseconds."""
        # Looked up on the module at each call so that freezegun's patch applies.
        return time.time_ns() // 1000

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    __slots__ = ("_now",)

    def __init__(self, start_us: int = 1_700_000_000_000_000) -> None:
        self._now = int(start_us)

    def now_us(self) -> int:
        """Return the clock's current time in microseconds."""
        return self._now

    def advance(self, seconds: float = 0.0, *, us: int = 0) -> None:
        """Move the clock forward by ``seconds`` plus ``us`` microseconds."""
        self._now += round(seconds * 1_000_000) + us

    def set(self, now_us: int) -> None:
        """Put the clock at ``now_us`` (it may move backwards, like a real skewed clock)."""
        self._now = int(now_us)

    def __repr__(self) -> str:
        return f"ManualClock({self._now})"


SYSTEM_CLOCK = SystemClock()
