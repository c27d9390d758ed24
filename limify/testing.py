"""Helpers for your own test suites: limits that never get in the way, or that run on a clock you move.

``disabled()``
    Nothing is refused inside it (every limit is in shadow mode): decisions are
    still computed and reported as events, with ``enforced=False``. A context
    manager, and a decorator of test functions (sync or async).
``isolated()``
    Every declared limit (``@rate_limit``, web rules, outbound transports) runs on
    one fresh :class:`~limify.InMemoryAdapter` driven by a :class:`~limify.ManualClock`,
    which it yields; everything is restored on exit::

        with limify.testing.isolated() as clock:
            assert fetch("alice")           # 1/minute
            with pytest.raises(limify.RateLimitExceeded):
                fetch("alice")
            clock.advance(60)
            assert fetch("alice")

``reset_all()``
    Forgets every key of every in-memory store Limify built from ``memory://``
    URLs, of each :class:`~limify.Limify`'s own, and of the one ``isolated()``
    runs on, and every refusal held in process for a remote store (see
    :mod:`limify.core.refusals`). Redis and other servers are left alone: flush
    their test database yourself, then call it.

With pytest, the ``limify_clock`` and ``limify_memory`` fixtures of
:mod:`limify.pytest_plugin` (registered when Limify is installed) wrap
``isolated()``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import ContextDecorator, contextmanager
from typing import Any, TypeVar, cast

from limify.core.clock import ManualClock
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.refusals import forget_all_refusals
from limify.core.storage import DEFAULTS, StorageURL, _urls, private_stores

__all__ = ["disabled", "isolated", "reset_all"]

F = TypeVar("F", bound=Callable[..., Any])


def _changed(change: Callable[[], None]) -> None:
    with DEFAULTS.lock:
        change()
        DEFAULTS.version += 1  # every limit re-reads the defaults on its next call


class disabled(ContextDecorator):  # noqa: N801 (used like a function: `with disabled():`)
    """Nothing is refused inside (see the module docs); nests, and decorates async tests too."""

    def __enter__(self) -> disabled:
        _changed(lambda: setattr(DEFAULTS, "unenforced", DEFAULTS.unenforced + 1))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _changed(lambda: setattr(DEFAULTS, "unenforced", DEFAULTS.unenforced - 1))

    def __call__(self, function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def unlimited(*args: Any, **kwargs: Any) -> Any:
                with type(self)():
                    return await function(*args, **kwargs)

            return cast(F, unlimited)
        return super().__call__(function)


@contextmanager
def isolated(clock: ManualClock | None = None) -> Iterator[ManualClock]:
    """Run every declared limit on a fresh in-memory store on ``clock`` (a new ManualClock by default)."""
    clock = ManualClock() if clock is None else clock
    if not isinstance(clock, ManualClock):
        raise TypeError(f"isolated() drives its store with a limify.ManualClock, got {clock!r}")
    previous = DEFAULTS.override
    store = InMemoryAdapter(clock=clock)
    _changed(lambda: setattr(DEFAULTS, "override", store))
    try:
        yield clock
    finally:
        _changed(lambda: setattr(DEFAULTS, "override", previous))


def reset_all() -> None:
    """Forget every key of the in-memory stores Limify built (see the module docs)."""
    stores = [
        url.for_sync()
        for url in list(_urls.values())
        if isinstance(url, StorageURL) and url.scheme == "memory"
    ]
    stores.extend(private_stores)
    if isinstance(DEFAULTS.override, InMemoryAdapter):
        stores.append(DEFAULTS.override)
    for store in stores:
        store.forget_all()
    forget_all_refusals()
