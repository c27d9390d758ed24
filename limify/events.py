"""Decision events: one immutable :class:`Decision` per decision, to whoever subscribed.

Every entry point (``@rate_limit``, web rules, outbound transports, Celery task
bodies, the algorithm shells) decides through the one engine, which reports
each decision here::

    from limify import events

    def log_refusals(decision: events.Decision) -> None:
        if not decision.allowed:
            print(decision.name, decision.key, decision.retry_after)

    events.subscribe(log_refusals)          # until events.unsubscribe(log_refusals)
    with events.subscribed(log_refusals):   # or for a block only
        ...

With no subscriber, a decision costs one truth test of :data:`listeners` on the
hot path and nothing more: no event is built, no clock is read. A subscriber
that raises is logged once (on the ``limify`` logger) and never breaks the
guarded call; the other subscribers still get the event.

Metrics integrations (:mod:`limify.contrib.opentelemetry`,
:mod:`limify.contrib.prometheus`) are subscribers too.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

__all__ = [
    "Decision",
    "Subscriber",
    "subscribe",
    "unsubscribe",
    "subscribed",
    "listeners",
    "emit",
    "source",
    "SOURCES",
]

log = logging.getLogger("limify")

#: Where a decision was made.
SOURCES = ("decorator", "web", "outbound", "celery", "shell")


class Decision(NamedTuple):
    """One decision, as subscribers see it (immutable: a named tuple, cheap to build).

    Attributes:
        name: the limit's name (the decorated callable's, the rule's id, the
            outbound gate's name, or ``""`` for a bare algorithm shell).
        plan: the id of the deciding plan.
        key: the storage key of the deciding limit, as stored.
        algorithm: the algorithm's name.
        allowed: whether the store admitted the call.
        remaining: what the deciding limit has left.
        retry_after: seconds until a refused call would be admitted (``0.0`` if admitted).
        enforced: ``False`` in shadow mode (and under :func:`limify.testing.disabled`):
            the call went on whatever the decision.
        source: ``"decorator"``, ``"web"``, ``"outbound"``, ``"celery"`` or ``"shell"``.
        storage_ok: ``False`` when the failure policy answered instead of the storage.
        duration: seconds the decision took, storage round trip included.
    """

    name: str
    plan: str
    key: str
    algorithm: str
    allowed: bool
    remaining: int
    retry_after: float
    enforced: bool
    source: str
    storage_ok: bool
    duration: float

    @property
    def outcome(self) -> str:
        """``"allowed"``, ``"refused"``, ``"shadow-refused"`` or ``"storage-error"`` (metrics' label)."""
        if not self.storage_ok:
            return "storage-error"
        if self.allowed:
            return "allowed"
        return "refused" if self.enforced else "shadow-refused"


Subscriber = Callable[[Decision], object]

#: The subscribers, in subscription order. The engine tests it before building an event.
listeners: list[Subscriber] = []
_failed: set[int] = set()

#: The source of the decisions made in this context, when its caller knows better than
#: the entry point (a decorated function run as a Celery task body is ``"celery"``).
_source: contextvars.ContextVar[str | None] = contextvars.ContextVar("limify_source", default=None)


def subscribe(callback: Subscriber) -> Subscriber:
    """Send every later decision to ``callback(decision)``; returns ``callback``.

    Raises:
        TypeError: ``callback`` is not callable.
    """
    if not callable(callback):
        raise TypeError(f"subscribe() needs a callable taking a limify.events.Decision, got {callback!r}")
    listeners.append(callback)
    return callback


def unsubscribe(callback: Subscriber) -> None:
    """Stop sending decisions to ``callback`` (nothing happens if it was not subscribed)."""
    try:
        listeners.remove(callback)
    except ValueError:
        pass


@contextmanager
def subscribed(callback: Subscriber) -> Iterator[Subscriber]:
    """``callback`` receives the decisions made inside the ``with`` block."""
    subscribe(callback)
    try:
        yield callback
    finally:
        unsubscribe(callback)


@contextmanager
def source(name: str) -> Iterator[None]:
    """Report the decisions made inside the block as coming from ``name`` (see :data:`SOURCES`)."""
    if name not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(map(repr, SOURCES))}; got {name!r}")
    token = _source.set(name)
    try:
        yield
    finally:
        _source.reset(token)


def current_source(default: str) -> str:
    """The source decisions made here report: :func:`source`'s, else ``default``."""
    return _source.get() or default


def emit(decision: Decision) -> None:
    """Hand ``decision`` to every subscriber; one that raises is logged once, never propagated."""
    for callback in tuple(listeners):
        try:
            callback(decision)
        except Exception:
            if id(callback) not in _failed:
                _failed.add(id(callback))
                log.exception(
                    "limify: decision subscriber %r raised (later failures are not logged)", callback
                )
