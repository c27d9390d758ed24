"""What the engine does with one store answer: report it, and answer a refusal.

Pure helpers of :class:`~limify.core.engine.Engine`, shared by ``run`` and
``run_async`` (they differ only in how they wait):

* :func:`settle` reports the decision (a :class:`limify.events.Decision`, built
  only when someone listens: subscribers or the limit's ``on_breach``), then
  answers a refused CONSUME the way the limit asks: returned, raised as
  :class:`~limify.RateLimitExceeded`, or a pause to wait before trying again. In
  shadow mode a refusal is recorded as such but answered as an :class:`Unenforced`
  outcome: the caller goes on.
* ``on_breach`` is called once per refused call: when the refusal is the call's
  last word (raised, returned, or let through in shadow mode), not for each
  attempt of a call that waits and is then admitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from limify import events
from limify.core.algorithms.base import Outcome, to_result
from limify.core.check import CONSUME, Check
from limify.core.refusals import RefusalCache
from limify.errors import RateLimitExceeded

__all__ = [
    "Unenforced",
    "Settings",
    "settle",
    "shadowed",
    "report",
    "FIRST_POLL",
    "LONGEST_POLL",
    "RETURN",
    "RAISE",
    "WAIT",
]

#: How a refusal is answered: returned to the caller, raised, or waited out.
RETURN, RAISE, WAIT = "return", "raise", "wait"
#: A lease waiting for a slot polls after this many seconds, then twice as long
#: each time, up to :data:`LONGEST_POLL`: a release can free a slot at any moment.
FIRST_POLL = 0.01
LONGEST_POLL = 0.25

Breach = Callable[[events.Decision], object]


class Unenforced(Outcome):
    """A refusal shadow mode let through: the store refused, the caller goes on.

    Web adapters answer it like an admission, with no 429 and no rate-limit headers.
    """

    __slots__ = ()


class Settings:
    """How one engine answers refusals and reports decisions (set when the engine is built)."""

    __slots__ = ("refusal", "max_wait", "name", "source", "shadow", "on_breach", "caches", "cache")

    def __init__(
        self,
        refusal: str,
        max_wait: float | None,
        name: str,
        source: str,
        shadow: bool | None,
        on_breach: Breach | None,
        caches: bool = False,
    ) -> None:
        self.refusal = refusal
        self.max_wait = max_wait
        self.name = name
        self.source = source
        #: ``None``: follow :func:`limify.configure`'s ``shadow``.
        self.shadow = shadow
        self.on_breach = on_breach
        #: Whether refusals known to hold are answered in process (see limify.core.refusals),
        #: and the cache doing it while the store is remote (``None`` otherwise).
        self.caches = caches
        self.cache: RefusalCache | None = None


def report(
    settings: Settings,
    check: Check,
    outcome: Outcome | None,
    key: str,
    enforced: bool,
    storage_ok: bool,
    started: float,
) -> events.Decision:
    """The event of one decision (``outcome`` None: the storage failed and the call was refused)."""
    index = 0 if outcome is None else outcome.decided_by
    plan = check.plans[index] if check.plans else None
    return events.Decision(
        name=settings.name,
        plan="" if plan is None else plan.id,
        key=key,
        algorithm=check.spec.name,
        allowed=False if outcome is None else bool(outcome.allowed),
        remaining=0 if outcome is None else int(outcome.remaining),
        retry_after=0.0 if outcome is None else outcome.retry_us / 1e6,
        enforced=enforced,
        source=events.current_source(settings.source),
        storage_ok=storage_ok,
        duration=time.perf_counter() - started if started else 0.0,
    )


def shadowed(settings: Settings) -> bool:
    """Whether the limit is in shadow mode now (its own setting, or the process defaults)."""
    return _shadowed(settings)


def store_answers_alone(settings: Settings) -> bool:
    """Whether, under the current defaults, a check's answer is the store's and nothing more:
    enforced (no shadow mode), no ``on_breach``, limits switched on. The in-process fast paths
    (``@rate_limit``'s, web rules') serve only such checks."""
    defaults = _DEFAULTS[0] if _DEFAULTS else _defaults()
    return defaults.enabled and settings.on_breach is None and not _shadowed(settings)


def _shadowed(settings: Settings) -> bool:
    defaults = _DEFAULTS[0] if _DEFAULTS else _defaults()
    if defaults.unenforced:
        return True
    return defaults.shadow if settings.shadow is None else settings.shadow


#: The process defaults (:data:`limify.core.storage.DEFAULTS`), found on first use.
_DEFAULTS: list[Any] = []


def _defaults() -> Any:
    from limify.core.storage import DEFAULTS  # storage imports the engine's siblings: late

    _DEFAULTS.append(DEFAULTS)
    return DEFAULTS


def settle(
    settings: Settings,
    check: Check,
    outcome: Outcome,
    key: str | None,
    storage_ok: bool,
    started: float,
    waited: float,
    tries: int,
    fresh: bool = True,
) -> Outcome | float:
    """The outcome to finish with, or the seconds to wait before trying again (see the module docs).

    Raises:
        RateLimitExceeded: a refused call of a limit that raises, or waited long enough.
    """
    if check.mode != CONSUME:
        return outcome  # peeks and give-backs decide no call: no event
    refused = not outcome.allowed
    cache = settings.cache
    spec = check.spec
    # Leases free slots on any release; a spec with on_refusal (penalties) saves state on
    # each refusal, so every refusal must reach the store: neither is answered from the cache.
    cacheable = not spec.lease and spec.on_refusal is None
    if refused and fresh and storage_ok and cache is not None and key is None and cacheable:
        cache.remember(check.keys, check.cost, outcome)
    key = key or (check.keys[outcome.decided_by] if check.keys else "")
    watched = bool(events.listeners) or (refused and settings.on_breach is not None)
    if not refused:
        if events.listeners:
            events.emit(report(settings, check, outcome, key, not _shadowed(settings), storage_ok, started))
        return outcome
    shadow = _shadowed(settings)
    event = report(settings, check, outcome, key, not shadow, storage_ok, started) if watched else None
    if event is not None and events.listeners:
        events.emit(event)
    if shadow:
        _breach(settings, event)
        return Unenforced(*outcome)
    try:
        pause = _after_refusal(settings, check, outcome, key, waited, tries)
    except RateLimitExceeded:
        _breach(settings, event)
        raise
    if pause is None:
        _breach(settings, event)
        return outcome
    return pause


def _breach(settings: Settings, event: events.Decision | None) -> None:
    if settings.on_breach is not None and event is not None:
        try:
            settings.on_breach(event)
        except Exception:
            events.log.exception("limify: on_breach of %r raised", settings.name)


def _after_refusal(
    settings: Settings, check: Check, outcome: Outcome, key: str, waited: float, tries: int
) -> float | None:
    """``None``: answer the refusal; a number: sleep that long and try again. May raise."""
    if settings.refusal == RETURN:
        return None
    result = to_result(outcome, check.plans)
    if settings.refusal == RAISE:
        raise RateLimitExceeded(result, key)
    max_wait = settings.max_wait
    if check.spec.lease:
        # retry_after is when enough leases expire; a release can free a slot
        # at any moment before that. So poll, ever less often, within max_wait.
        pause = min(result.retry_after, FIRST_POLL * (1 << min(tries, 8)), LONGEST_POLL)
        if max_wait is not None:
            if max_wait - waited <= 0:
                raise RateLimitExceeded(result, key)
            pause = min(pause, max_wait - waited)
        return pause
    if max_wait is not None and waited + result.retry_after > max_wait:
        raise RateLimitExceeded(result, key)
    return result.retry_after


def storage_failure(settings: Settings, check: Any, started: float) -> None:
    """Report a decision the storage could not make and the policy refused (``fail_closed``)."""
    if events.listeners and isinstance(check, Check) and check.mode == CONSUME:
        key = check.keys[0] if check.keys else ""
        events.emit(report(settings, check, None, key, True, False, started))
