"""The gate every outbound HTTP integration shares: limit, pause, wait or refuse.

One request goes through :meth:`OutboundGate.admit` before it is sent and
:meth:`OutboundGate.observe` once its response headers arrived:

* ``admit`` runs one check of the request's limit through the engine, which
  first reads the upstream's pause (the store's ``hold``); while one runs it
  waits (or raises), so a paused request consumes nothing. Refused, it waits
  ``retry_after`` (or raises) and starts over.
* ``observe`` turns a 429/503 (``pause_on``) carrying ``Retry-After`` into a
  pause of that key, capped at ``max_pause``, that every caller sharing the
  storage honours: a pause is storage data, one key per upstream whose
  remaining lifetime is the pause left (``pause.lua``, measured with the Redis
  server's clock so app servers with skewed clocks agree on when it ends).

Requests already past ``admit`` when the pause starts still go out: the gate
holds back the requests that come after a refusal, not those in flight with it.
The gate is written once: :class:`AsyncOutboundGate` differs only in running
the engine's ``run_async`` (so ``admit`` and ``observe`` return awaitables). It
follows :func:`limify.configure`, storage and failure policy alike, unless given
its own.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

from limify.core.algorithms import algorithm_classes
from limify.core.check import HOLD, Check
from limify.core.engine import DEFAULT_POLICY, RAISE, WAIT, Engine, ready
from limify.core.storage import DEFAULTS
from limify.core.keys import PREFIX, encode_part
from limify.core.plan import Plan
from limify.core.rate import parse_rate
from limify.core.resilience import check_policy
from limify.core.storage import StorageLike
from limify.core.validation import check_wait_options

__all__ = [
    "parse_retry_after",
    "OutboundGate",
    "AsyncOutboundGate",
    "GATE_OPTIONS",
    "DEFAULT_PAUSE_ON",
    "DEFAULT_MAX_PAUSE",
]

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


class OutboundGate(Generic[R]):
    """Settled at construction: plan, keys, engine and options (see the module docs).

    Args:
        rate: the limit of each upstream (a rate string or a Plan).
        default_key: ``(request) -> key`` when ``key`` is not given (the host).
        storage: a URL or adapter; ``None`` follows :func:`limify.configure`.
        key: ``(request) -> key``; ``None`` from it exempts the request.
        algorithm: a rate algorithm's name (not a lease such as ``concurrency``).
        on_exceeded: ``"wait"`` (sleep until admitted) or ``"raise"``.
        max_wait: with ``"wait"``, the longest total wait before raising.
        pause_on: statuses whose ``Retry-After`` pauses the upstream (``()``: none).
        max_pause: the longest pause taken from one ``Retry-After``, in seconds.
        name: the limit's name in storage keys.
        on_storage_error: the failure policy; ``None`` follows :func:`limify.configure`.
    """

    is_async = False

    def __init__(
        self,
        rate: str | Plan,
        *,
        default_key: Callable[[R], Any],
        storage: StorageLike | None = None,
        key: Callable[[R], Any] | None = None,
        algorithm: str = "token_bucket",
        on_exceeded: str = "wait",
        max_wait: float | None = None,
        pause_on: Iterable[int] = DEFAULT_PAUSE_ON,
        max_pause: float = DEFAULT_MAX_PAUSE,
        name: str = "outbound",
        on_storage_error: str | None = None,
    ) -> None:
        self.plan = rate if isinstance(rate, Plan) else parse_rate(rate)
        spec = algorithm_classes(algorithm)[0].spec
        if spec.lease:
            # A lease is held until released, and the gate never sees a request end
            # (only its response headers): every slot would leak for its whole TTL.
            raise ValueError(
                f"algorithm={algorithm!r} limits calls in flight, which outbound requests cannot "
                "release; use a rate algorithm such as 'token_bucket' or 'gcra'"
            )
        spec.check_plans((self.plan,))
        self.pause_on = frozenset(_check_options(on_exceeded, max_wait, pause_on, max_pause, name, key))
        self.max_pause = float(max_pause)
        self.get_key = key or default_key
        self.spec = spec
        self.engine = Engine(
            storage,
            is_async=self.is_async,
            policy=DEFAULT_POLICY if on_storage_error is None else check_policy(on_storage_error),
            refusal=WAIT if on_exceeded == "wait" else RAISE,
            max_wait=max_wait,
            name=name,
            source="outbound",
            shadow=None,
            cache_refusals=True,
        )
        self.prefix = f"{PREFIX}:{encode_part(name)}:{encode_part(self.plan.id)}"
        # '#' never occurs in an encoded part, so no plan id can make a limit key equal a pause key.
        self.pause_prefix = f"{PREFIX}:{encode_part(name)}:#pause"

    def admit(self, request: R) -> Any:
        """Wait until ``request`` may go out (or raise); return its pause key for :meth:`observe`.

        An async gate returns an awaitable of it.
        """
        identity = self.get_key(request)
        part = None if identity is None else encode_part(identity)
        pause_key = None if part is None or not self.pause_on else f"{self.pause_prefix}:{part}"
        if part is None or not DEFAULTS.enabled:  # exempted by the key function, or limits switched off
            return ready(self.is_async, None)
        check = Check(self.spec, (f"{self.prefix}:{part}",), (self.plan,), 1, pause_key=pause_key)
        return self.engine.runner(check, lambda check, outcome: pause_key)

    def observe(self, pause_key: str | None, status: int, retry_after: str | None) -> Any:
        """Pause the upstream if the response asks for it (an awaitable for an async gate)."""
        ms = self.pause_ms(status, retry_after) if pause_key is not None else 0
        if not ms:
            return ready(self.is_async, None)
        return self.engine.runner(Check(self.spec, (pause_key,), (self.plan,), ms, HOLD))  # type: ignore[arg-type]

    def pause_ms(self, status: int, retry_after: str | None) -> int:
        """The pause a response asks for, in whole ms (0: none)."""
        if status not in self.pause_on:
            return 0
        seconds = parse_retry_after(retry_after, time.time())
        if not seconds:
            return 0
        # +1 ms: Redis truncates its clock to the millisecond, which could end a pause early.
        return math.ceil(min(seconds, self.max_pause) * 1000) + 1


class AsyncOutboundGate(OutboundGate[R]):
    """The asynchronous gate: ``await admit(request)``, ``await observe(...)`` (asyncio or trio)."""

    is_async = True



#: The keyword options a transport passes on to its gate (all but ``default_key``).
GATE_OPTIONS = frozenset(inspect.signature(OutboundGate.__init__).parameters) - {
    "self",
    "rate",
    "default_key",
}
