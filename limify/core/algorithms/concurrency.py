"""Concurrency limit: at most ``limit`` units of cost in flight at once, per key.

Theory of operation
-------------------
A call that is admitted holds a *lease* until it releases it. A lease is named
by the call's ``token`` (an opaque string, unique per call) and holds ``cost``
units until ``now + period``: the plan's period is the lease's time to live,
the longest a call may run before its slot is presumed leaked by a process
that crashed without releasing it.

State per key: the leases, as ``token -> (expiry_us, cost)``. A lease is *live*
while ``now < expiry``; ``in_flight`` is the total cost of the live leases.
A key never seen holds no lease.

* Acquire (mode CONSUME with the token): expired leases are dropped; the call is
  admitted when ``others + cost <= limit``, where ``others`` is the cost in flight
  under every token but this one. Admitted, the token's lease becomes
  ``(now + period, cost)``. So acquiring with a token that already holds a live
  lease *renews* it (new cost, new expiry) and never counts it twice; a refused
  renewal leaves the old lease as it was.
* Release (mode REFUND with the token): the token's lease is removed. Releasing
  a token that holds nothing (never admitted, expired, already released) does
  nothing, so a release is idempotent.
* ``remaining`` is ``limit - in_flight`` after the call (never below 0, even if
  the limit was lowered under leases already held).
* ``retry_us`` of a refused call is the time until enough *other* leases expire
  for it to fit: the smallest ``T`` such that the leases expiring at or before
  ``T`` hold at least ``others + cost - limit``. It is exact when nobody releases
  (the same call at ``now + retry_us`` is admitted, one microsecond earlier it is
  not); a release usually frees a slot much sooner, so callers that wait should
  poll rather than sleep the whole of it.
* ``reset_us`` and the key's TTL are the time until the last live lease expires,
  after which the state is the same as no state at all.

Invariants: at every instant the live leases of a key hold at most ``limit``
(for a fixed limit); a lease frees its slot at the latest at its expiry; a
refused acquire changes nothing; a release never frees another token's slot.

Storage
-------
In memory the state is a :class:`Leases` (a dict by token, a list sorted by
expiry and the total cost held), never mutated: an admission copies it, which
is a C-level copy of a few hundred entries, while the decision itself costs
O(log n) plus the expired leases dropped. On Redis (``concurrency.lua``) the
leases live in one sorted set and each call touches only the members it needs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from limify.core.algorithms.base import (
    CONSUME,
    PEEK,
    REFUND,
    AlgorithmSpec,
    Outcome,
    StepTuple,
    new_token,
    period_bound,
    to_result,
)
from limify.core.algorithms.codecs import Member, ZsetCodec
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.check import Check
from limify.core.plan import Plan
from limify.core.result import LimitationResult
from limify.errors import RateLimitExceeded

__all__ = [
    "transition",
    "refund",
    "Leases",
    "Lease",
    "new_token",
    "CONCURRENCY",
    "ConcurrencyAlgorithm",
    "AsyncConcurrencyAlgorithm",
]


class Leases(NamedTuple):
    """The leases of one key. Transitions never mutate one; they build a new one."""

    #: token -> (expiry_us, cost)
    by_token: dict[str, tuple[int, int]]
    #: (expiry_us, token) for every lease, sorted: expired leases come first.
    order: list[tuple[int, str]]
    #: Total cost of every lease stored, expired ones included.
    held: int


_EXPIRY = itemgetter(0)
_EMPTY = Leases({}, [], 0)
#: ``Leases(...)`` without the Python-level ``__new__`` a NamedTuple has: ``_leases((by_token, order, held))``.
_leases = partial(tuple.__new__, Leases)


def _first_live(state: Leases, now: int) -> tuple[int, int]:
    """Index in ``state.order`` of the first live lease, and the cost of those before it."""
    order = state.order
    if not order or order[0][0] > now:  # nothing expired: the usual case
        return 0, 0
    first = bisect_right(order, now, key=_EXPIRY)
    by_token = state.by_token
    return first, sum(by_token[token][1] for _, token in state.order[:first])


def _without(state: Leases, first_live: int, token: str) -> Leases:
    """A copy of ``state`` with its expired leases and ``token``'s lease removed."""
    by_token = dict(state.by_token)
    order = state.order[first_live:]
    held = state.held
    for _, expired in state.order[:first_live]:
        held -= by_token.pop(expired)[1]
    mine = by_token.pop(token, None)
    if mine is not None:  # a live lease (an expired one went with the others)
        held -= mine[1]
        del order[bisect_left(order, (mine[0], token))]
    return _leases((by_token, order, held))


def transition(state: Leases | None, now: int, plan: Plan, cost: int, token: str = "") -> StepTuple:
    """Acquire (or renew) ``token``'s lease of ``cost`` units (twin of ``concurrency.lua``)."""
    limit = plan.limit
    period = plan.period_us
    if state is None:
        if cost <= limit:  # the first lease of the key: the general case below, written short
            expiry = now + period
            return (
                True,
                limit - cost,
                period,
                0,
                _leases(({token: (expiry, cost)}, [(expiry, token)], cost)),
                period,
            )
        state = _EMPTY
    first_live, expired_cost = _first_live(state, now)
    in_flight = state.held - expired_cost
    mine = state.by_token.get(token)
    own = mine[1] if mine is not None and mine[0] > now else 0
    others = in_flight - own
    if cost <= limit and others + cost <= limit:
        leased = _without(state, first_live, token)
        expiry = now + period
        leased.by_token[token] = (expiry, cost)
        insort(leased.order, (expiry, token))
        new_state = _leases((leased.by_token, leased.order, leased.held + cost))
        reset = new_state.order[-1][0] - now
        return (True, limit - others - cost, reset, 0, new_state, reset)
    last = state.order[-1][0] if state.order else now
    reset = max(0, last - now)
    if cost > limit:  # never admissible; shells reject such costs before they get here
        retry = period
    else:
        # Walk the other live leases by expiry until enough of them are gone.
        need = others + cost - limit
        freed = 0
        retry = period  # not reached: the other leases hold at least `need`
        order = state.order
        for index in range(first_live, len(order)):
            expiry, holder = order[index]
            if holder == token:
                continue
            freed += state.by_token[holder][1]
            if freed >= need:
                retry = expiry - now
                break
    return (False, max(0, limit - in_flight), reset, retry, state, reset)


def refund(
    state: Leases | None, now: int, plan: Plan, cost: int, token: str = ""
) -> tuple[Leases | None, int]:
    """Release ``token``'s lease, if it holds one (twin of ``refund`` in the Lua)."""
    if state is None or (len(state.by_token) == 1 and token in state.by_token):
        return None, 0  # nothing held, or the last lease released: no state at all
    first_live, _ = _first_live(state, now)
    if first_live == 0 and token not in state.by_token:
        return state, state.order[-1][0] - now  # nothing to drop: every lease is live
    released = _without(state, first_live, token)
    if not released.order:
        return None, 0
    return released, released.order[-1][0] - now


def _to_members(state: Leases) -> list[Member]:
    """The lease members of ``concurrency.lua`` (see its header): L, C and H."""
    members: list[Member] = [(-state.held, "H")]
    for token, (expiry, cost) in state.by_token.items():
        members.append((expiry, "L" + token))
        if cost > 1:
            members.append((-cost, "C" + token))
    return members


def _from_members(members: Sequence[Member]) -> Leases:
    expiries: dict[str, int] = {}
    costs: dict[str, int] = {}
    held = 0
    for score, member in members:
        if member == "H":
            held = -int(score)
        elif member[:1] == "L":
            expiries[member[1:]] = int(score)
        elif member[:1] == "C":
            costs[member[1:]] = -int(score)
    by_token = {token: (expiry, costs.get(token, 1)) for token, expiry in expiries.items()}
    return Leases(by_token, sorted((expiry, token) for token, (expiry, _) in by_token.items()), held)


CONCURRENCY = AlgorithmSpec(
    "concurrency",
    transition,
    refund,
    "concurrency.lua",
    ZsetCodec(_to_members, _from_members),
    lease=True,
    admitted_bound=period_bound,  # without releases: a lease holds its slot for one period
)


@dataclass(frozen=True)
class Lease:
    """A slot held by :meth:`ConcurrencyAlgorithm.slot`: its token and the admitting result."""

    key: str
    token: str
    cost: int
    result: LimitationResult


def _check_token(token: str, mode: str) -> None:
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, got {token!r}")
    if not token and mode != PEEK:
        raise ValueError(
            "a concurrency limit needs a non-empty token naming the call's lease "
            "(its slot must be released): use acquire()/release() or slot() instead of check()"
        )


def _with_token(token: str) -> Callable[[Check, Outcome], tuple[LimitationResult, str]]:
    def finish(check: Check, outcome: Outcome) -> tuple[LimitationResult, str]:
        return to_result(outcome, check.plans), token

    return finish


class _Leases:
    """What both concurrency shells share: every call names its lease by a token.

    A mixin in front of :class:`SyncAlgorithm` / :class:`AsyncAlgorithm`, whose
    ``_run``, ``_check`` and ``check_all`` it uses.
    """

    _run: Callable[..., Any]
    check_all: Callable[..., Any]

    def _check(self, keys: Sequence[str], plans: Sequence[Plan], cost: int, mode: str, token: str) -> Check:
        _check_token(token, mode)
        checked: Check = super()._check(keys, plans, cost, mode, token)  # type: ignore[misc]
        return checked

    def acquire(self, key: str, plan: Plan, cost: int = 1) -> Any:
        """Try to take ``cost`` slots under a fresh token; return the result and the token.

        An async acquire cancelled while waiting for its answer releases the token
        before the cancellation goes on: it may have run on the server already.
        """
        token = new_token()
        return self._run(self._check((key,), (plan,), cost, CONSUME, token), _with_token(token))

    def renew(self, key: str, plan: Plan, token: str, cost: int = 1) -> Any:
        """Extend ``token``'s lease to a full period from now (and set its cost); see the module docs."""
        return self.check_all((key,), (plan,), cost, CONSUME, token)

    def release(self, key: str, plan: Plan, token: str, cost: int = 1) -> Any:
        """Give ``token``'s slots back (idempotent); report what a call of ``cost`` would get now."""
        return self.check_all((key,), (plan,), cost, REFUND, token)


class ConcurrencyAlgorithm(_Leases, SyncAlgorithm):
    """Concurrency limit on a synchronous storage adapter (memory or Redis).

    ``with limiter.slot(key, plan): ...`` holds one slot for the body. ``check()``
    and ``refund()`` are refused (``ValueError``): a slot needs a token to be
    released by; use :meth:`acquire` / :meth:`release` or :meth:`slot`.
    """

    spec = CONCURRENCY

    if TYPE_CHECKING:

        def acquire(self, key: str, plan: Plan, cost: int = 1) -> tuple[LimitationResult, str]: ...
        def renew(self, key: str, plan: Plan, token: str, cost: int = 1) -> LimitationResult: ...
        def release(self, key: str, plan: Plan, token: str, cost: int = 1) -> LimitationResult: ...

    @contextmanager
    def slot(self, key: str, plan: Plan, cost: int = 1) -> Iterator[Lease]:
        """Hold ``cost`` slots for the ``with`` body; released on exit, even on error.

        Raises:
            RateLimitExceeded: every slot is taken (``retry_after`` is when leases
                expire; a release usually frees one sooner).
        """
        result, token = self.acquire(key, plan, cost)
        if not result.allowed:
            raise RateLimitExceeded(result, key)
        try:
            yield Lease(key, token, cost, result)
        finally:
            self.release(key, plan, token, cost)


class AsyncConcurrencyAlgorithm(_Leases, AsyncAlgorithm):
    """Concurrency limit on an asynchronous storage adapter (memory or redis.asyncio).

    ``async with limiter.slot(key, plan): ...`` is the twin of the sync ``slot``.
    """

    spec = CONCURRENCY

    if TYPE_CHECKING:

        def acquire(self, key: str, plan: Plan, cost: int = 1) -> Awaitable[tuple[LimitationResult, str]]: ...
        def renew(self, key: str, plan: Plan, token: str, cost: int = 1) -> Awaitable[LimitationResult]: ...
        def release(self, key: str, plan: Plan, token: str, cost: int = 1) -> Awaitable[LimitationResult]: ...

    @asynccontextmanager
    async def slot(self, key: str, plan: Plan, cost: int = 1) -> AsyncIterator[Lease]:
        """Hold ``cost`` slots for the ``async with`` body; released on exit, even when cancelled.

        Raises:
            RateLimitExceeded: every slot is taken.
        """
        result, token = await self.acquire(key, plan, cost)
        if not result.allowed:
            raise RateLimitExceeded(result, key)
        try:
            yield Lease(key, token, cost, result)
        finally:
            # Shielded: a cancelled body must still hand its slot back.
            with anyio.CancelScope(shield=True):
                await self.release(key, plan, token, cost)
