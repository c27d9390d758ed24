"""The gate every outbound HTTP integration shares: limit, pause, wait or refuse.

One request goes through :meth:`OutboundGate.admit` before it is sent and
:meth:`OutboundGate.observe` once its response headers arrived:

* ``admit`` reads the upstream's pause (see :mod:`limify.contrib._pauses`);
  while one runs it waits (or raises). Then it runs one check of the limit;
  refused, it waits ``retry_after`` (or raises) and starts over. The pause is
  read before the check, so a paused request consumes nothing.
* ``observe`` turns a 429/503 (``pause_on``) carrying ``Retry-After`` into a
  pause of that key, capped at ``max_pause``, that every caller sharing the
  storage honours.

Requests already past ``admit`` when the pause starts still go out: the gate
holds back the requests that come after a refusal, not those in flight with it.
:class:`AsyncOutboundGate` is the same loop with ``await``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import anyio

from limify.contrib._pauses import pauses_for
from limify.core.algorithms import algorithm_classes
from limify.core.keys import PREFIX, encode_part
from limify.core.plans import Plan
from limify.core.rate import parse_rate
from limify.core.result import LimitationResult
from limify.core.storage import StorageLike, adapter_for
from limify.core.validation import check_wait_options
from limify.decorator import get_default_storage
from limify.errors import RateLimitExceeded

__all__ = ["parse_retry_after", "OutboundGate", "AsyncOutboundGate", "DEFAULT_PAUSE_ON", "DEFAULT_MAX_PAUSE"]

R = TypeVar("R")

#: Statuses whose ``Retry-After`` pauses the upstream.
DEFAULT_PAUSE_ON = (429, 503)
#: Longest pause taken from one ``Retry-After`` (seconds); protects against bogus headers.
DEFAULT_MAX_PAUSE = 600.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, delta seconds or HTTP date; None if unusable.

    ``now`` is the wall-clock time (``time.time()``) an HTTP date is measured from.
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:  # delay-seconds; decimals are tolerated, signs and non-finite values are not
        ascii_number = text.isascii() and text[:1].isdigit()  # float() also reads other scripts' digits
        return seconds if ascii_number and math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about local time
        when = when.replace(tzinfo=timezone.utc)  # noqa: UP017 (datetime.UTC is 3.11+)
    return max(0.0, when.timestamp() - now)


def _check_options(
    on_exceeded: Any, max_wait: Any, pause_on: Any, max_pause: Any, name: Any, key: Any
) -> tuple[int, ...]:
    check_wait_options(on_exceeded, max_wait)
    if isinstance(pause_on, (str, bytes)) or not isinstance(pause_on, Iterable):
        raise TypeError(f"pause_on must be a collection of HTTP status codes, got {pause_on!r}")
    statuses = tuple(pause_on)
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"pause_on must hold HTTP status codes (100-599), got {status!r}")
    if isinstance(max_pause, bool) or not isinstance(max_pause, (int, float)):
        raise TypeError(f"max_pause must be a number of seconds, got {max_pause!r}")
    if not (max_pause > 0 and math.isfinite(max_pause)):
        raise ValueError(f"max_pause must be a finite number of seconds > 0, got {max_pause!r}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if key is not None and not callable(key):
        raise TypeError(f"key must be None or a callable taking the request, got {key!r}")
    return statuses


class _Gate(Generic[R]):
    """Settled at construction: plan, keys, storage, options. Sync/async differ below."""

    def __init__(
        self,
        rate: str | Plan,
        *,
        default_key: Callable[[R], Any],
        is_async: bool,
        storage: StorageLike | None = None,
        key: Callable[[R], Any] | None = None,
        algorithm: str = "token_bucket",
        on_exceeded: str = "wait",
        max_wait: float | None = None,
        pause_on: Iterable[int] = DEFAULT_PAUSE_ON,
        max_pause: float = DEFAULT_MAX_PAUSE,
        name: str = "outbound",
    ) -> None:
        self.plan = rate if isinstance(rate, Plan) else parse_rate(rate)
        classes = algorithm_classes(algorithm)
        if classes[0].spec.lease:
            # A lease is held until released, and the gate never sees a request end
            # (only its response headers): every slot would leak for its whole TTL.
            raise ValueError(
                f"algorithm={algorithm!r} limits calls in flight, which outbound requests cannot "
                "release; use a rate algorithm such as 'token_bucket' or 'gcra'"
            )
        self.pause_on = frozenset(_check_options(on_exceeded, max_wait, pause_on, max_pause, name, key))
        self.wait = on_exceeded == "wait"
        self.max_wait = max_wait
        self.max_pause = float(max_pause)
        self.get_key = key or default_key
        adapter = adapter_for(get_default_storage() if storage is None else storage, is_async=is_async)
        self.algorithm: Any = classes[1 if is_async else 0](adapter)
        self.pauses: Any = pauses_for(adapter, is_async=is_async) if self.pause_on else None
        self.prefix = f"{PREFIX}:{encode_part(name)}:{encode_part(self.plan.id)}"
        # '#' never occurs in an encoded part, so no plan id can make a limit key equal a pause key.
        self.pause_prefix = f"{PREFIX}:{encode_part(name)}:#pause"

    def keys(self, request: R) -> tuple[str, str] | None:
        """(limit key, pause key) of ``request``; None when the key function exempts it."""
        identity = self.get_key(request)
        if identity is None:
            return None
        part = encode_part(identity)
        return f"{self.prefix}:{part}", f"{self.pause_prefix}:{part}"

    def _delay(self, result: LimitationResult, key: str, waited: float) -> float:
        """Raise, or return how long to sleep before trying again."""
        if not self.wait or (self.max_wait is not None and waited + result.retry_after > self.max_wait):
            raise RateLimitExceeded(result, key)
        return result.retry_after

    def _paused(self, ms: int) -> LimitationResult:
        return LimitationResult(False, 0, self.plan.limit, ms / 1000, ms / 1000)

    def pause_ms(self, status: int, retry_after: str | None) -> int:
        """The pause a response asks for, in whole ms (0: none)."""
        if status not in self.pause_on:
            return 0
        seconds = parse_retry_after(retry_after, time.time())
        if not seconds:
            return 0
        # +1 ms: Redis truncates its clock to the millisecond, which could end a pause early.
        return math.ceil(min(seconds, self.max_pause) * 1000) + 1


class OutboundGate(_Gate[R]):
    """The synchronous gate (``time.sleep`` while waiting)."""

    def __init__(self, rate: str | Plan, **options: Any) -> None:
        super().__init__(rate, is_async=False, **options)

    def admit(self, request: R) -> str | None:
        """Wait until ``request`` may go out (or raise); return its pause key for :meth:`observe`."""
        keys = self.keys(request)
        if keys is None:
            return None
        limit_key, pause_key = keys
        waited = 0.0
        while True:
            paused_ms = self.pauses.hold(pause_key, 0) if self.pauses is not None else 0
            if paused_ms > 0:
                delay = self._delay(self._paused(paused_ms), pause_key, waited)
            else:
                result = self.algorithm.check(limit_key, self.plan)
                if result.allowed:
                    return pause_key
                delay = self._delay(result, limit_key, waited)
            time.sleep(delay)
            waited += delay

    def observe(self, pause_key: str | None, status: int, retry_after: str | None) -> None:
        """Pause the upstream if the response asks for it."""
        ms = self.pause_ms(status, retry_after) if pause_key is not None else 0
        if ms:
            self.pauses.hold(pause_key, ms)


class AsyncOutboundGate(_Gate[R]):
    """The asynchronous gate (``anyio.sleep`` while waiting; asyncio or trio)."""

    def __init__(self, rate: str | Plan, **options: Any) -> None:
        super().__init__(rate, is_async=True, **options)

    async def admit(self, request: R) -> str | None:
        """Wait until ``request`` may go out (or raise); return its pause key for :meth:`observe`."""
        keys = self.keys(request)
        if keys is None:
            return None
        limit_key, pause_key = keys
        waited = 0.0
        while True:
            paused_ms = await self.pauses.hold_async(pause_key, 0) if self.pauses is not None else 0
            if paused_ms > 0:
                delay = self._delay(self._paused(paused_ms), pause_key, waited)
            else:
                result = await self.algorithm.check(limit_key, self.plan)
                if result.allowed:
                    return pause_key
                delay = self._delay(result, limit_key, waited)
            await anyio.sleep(delay)
            waited += delay

    async def observe(self, pause_key: str | None, status: int, retry_after: str | None) -> None:
        """Pause the upstream if the response asks for it."""
        ms = self.pause_ms(status, retry_after) if pause_key is not None else 0
        if ms:
            await self.pauses.hold_async(pause_key, ms)
