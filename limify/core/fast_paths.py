"""The hot paths of one decorated limit: plain closures built from its settled parts.

:meth:`FunctionLimit.fast_admit <limify.core.function_limit.FunctionLimit.fast_admit>`
and :meth:`~limify.core.function_limit.FunctionLimit.fast_acquire` are built here, once
per limit and again whenever :func:`limify.configure` changes the defaults. Each
closure checks the defaults' version itself, so the wrappers call it with no frame
in between; a check it cannot answer alone (someone listens to decisions, a web
request is open, the store or the limit is not of the kind it serves) is left to
the engine by answering ``False`` (or ``None``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from limify import events
from limify.core.algorithms.base import Outcome
from limify.core.answers import store_answers_alone
from limify.core.keys import encode_part
from limify.core.memory_adapter import InMemoryAdapter, Run
from limify.core.request_scope import current
from limify.core.storage import DEFAULTS
from limify.errors import RateLimitExceeded

if TYPE_CHECKING:
    from limify.core.function_limit import FunctionLimit

__all__ = ["Held", "FastCheck", "FastLease", "admission", "lease"]

#: A lease taken on the hot path: released by ``run(key, token, True)``.
Held = tuple[Run, str, str]
#: ``fast_check(args, kwargs)``: True when admitted here; False: ask the engine.
FastCheck = Callable[[tuple[Any, ...], dict[str, Any]], bool]
#: ``fast_lease(args, kwargs)``: the lease taken here; None: ask the engine.
FastLease = Callable[[tuple[Any, ...], dict[str, Any]], "Held | None"]

#: Names of the leases taken on the in-memory hot path: unique in this process, which is
#: all an in-memory store sees (a forked child works on a copy of its own). The ``m``
#: keeps them apart from :func:`~limify.core.algorithms.base.new_token`'s names.
_local_token = functools.partial(next, map("m{:x}".format, itertools.count()))


def admission(owner: FunctionLimit) -> FastCheck:
    """``owner``'s :meth:`~limify.core.function_limit.FunctionLimit.fast_admit` under the current
    defaults: one closure that hands over to ``fast_admit`` (a rebuild) once they change."""
    version, defaults, rebuild = DEFAULTS.version, DEFAULTS, owner.fast_admit

    def never(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        return defaults.version != version and rebuild(args, kwargs)

    prefix = owner._keyed_prefix
    if prefix is None or not store_answers_alone(owner.engine.settings):
        return never
    store, cost, raises = owner.engine.store, owner.cost, owner._raises
    get_key, limit, listeners, in_request = owner.get_key, owner.plans[0].limit, events.listeners, current
    assert get_key is not None and not callable(cost)
    cache = owner.engine.settings.cache
    held = None if cache is None else cache.held  # empty (the usual case): nothing to look up
    if type(store) is not InMemoryAdapter:
        if cache is None or not raises:
            return never

        def known_refusal(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
            # A remote store: only a refusal known to hold is answered here, without a round trip.
            if defaults.version != version:
                return rebuild(args, kwargs)
            if not held or listeners or in_request() is not None:
                return False
            key = prefix + encode_part(get_key(None, args, kwargs))
            found = cache.refusal((key,), cost)
            if found is None:
                return False
            raise RateLimitExceeded.refused(key, found[0], limit, found[1], found[2])

        return known_refusal
    run = store.runner(owner.spec, owner.plans[0], cost)

    def in_memory(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        if defaults.version != version:
            return rebuild(args, kwargs)
        if listeners or in_request() is not None:
            return False
        key = prefix + encode_part(get_key(None, args, kwargs))
        if held:
            found = cache.refusal((key,), cost)  # type: ignore[union-attr]
            if found is not None:
                if raises:
                    raise RateLimitExceeded.refused(key, found[0], limit, found[1], found[2])
                return False  # a limit that waits: the engine waits it out
        step = run(key)
        if step[0]:
            return True
        if cache is not None:
            cache.remember((key,), cost, Outcome(False, step[1], step[2], step[3], 0, 0))
        if raises:
            raise RateLimitExceeded.refused(key, step[1], limit, step[2], step[3])
        return False

    return in_memory


def lease(owner: FunctionLimit) -> FastLease:
    """``owner``'s :meth:`~limify.core.function_limit.FunctionLimit.fast_acquire` under the current
    defaults (see :func:`admission`)."""
    version, defaults, rebuild = DEFAULTS.version, DEFAULTS, owner.fast_acquire
    store, lease_key = owner.engine.store, owner._lease_key
    if (
        lease_key is None
        or type(store) is not InMemoryAdapter
        or not owner._raises
        or not store_answers_alone(owner.engine.settings)
    ):

        def never(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Held | None:
            return rebuild(args, kwargs) if defaults.version != version else None

        return never
    run = store.runner(owner.spec, owner.plans[0], owner.cost)  # type: ignore[arg-type]
    get_key, limit, listeners, in_request = owner.get_key, owner.plans[0].limit, events.listeners, current

    def in_memory(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Held | None:
        if defaults.version != version:
            return rebuild(args, kwargs)
        if listeners or in_request() is not None:
            return None
        key = lease_key if get_key is None else lease_key + encode_part(get_key(None, args, kwargs))
        token = _local_token()
        step = run(key, token)
        if step[0]:
            return run, key, token
        raise RateLimitExceeded.refused(key, step[1], limit, step[2], step[3])

    return in_memory
