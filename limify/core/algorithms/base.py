"""The algorithm contract: a pure transition, its Lua twin, its state codec and its bound.

Theory of operation
-------------------
An algorithm is two pure functions, each written twice::

    transition(state, now_us, plan, cost, token) -> Step
    refund(state, now_us, plan, cost, token) -> (new_state, ttl_us)

``state`` is whatever the algorithm keeps per key (``None`` for a key never
seen or expired); ``now_us`` is the time in integer microseconds; ``plan`` gives
``limit`` and ``period_us``; ``token`` is an opaque string naming the call (the
lease id of a concurrency slot; ``""`` when unused). They read no clock, take
no lock and do no I/O. ``transition`` returns a :data:`Step`::

    (allowed, remaining, reset_us, retry_us, new_state, ttl_us)

``ttl_us`` is how long ``new_state`` stays meaningful: after it, the state is
indistinguishable from ``None`` (a full bucket, an empty window), so storage may
drop it (``ttl_us <= 0``: drop it now). TTLs only collect garbage; they never
decide. ``refund`` gives ``cost`` back (a call that failed fast, a released
concurrency slot).

The Lua twin (``<name>.lua`` beside the Python module) defines ``load(key)``,
``transition``, ``refund`` and ``save(key, state, ttl_us)``; the shared
``driver.lua`` runs them over every limit of a call, behind ``prelude.lua``.
The Python :func:`run_limits` is the driver's twin. Stores only move state
(see :mod:`limify.core.check`): the in-memory adapter runs :func:`run_limits`
under a lock, Redis runs the script in one EVALSHA, and a store without Lua
keeps the text of the spec's ``codec`` (:mod:`limify.core.algorithms.codecs`).
Differential tests bind each Python function to its Lua twin, and the codec to
what the Lua stores. The shells (``check(key, plan)``) are in
:mod:`limify.core.algorithms.shells`; the engine that runs every check, in
:mod:`limify.core.engine`.

Refunds name their call: the token of a refund that follows an admission is
``"<admitted_us>:<call token>"`` (:func:`refund_token`), so that window counters
give the cost back only to the window the call was counted in, and the sliding
log removes the call's own entry. Either way a refund can only undo what its own
call did, so no window ever holds more than its limit.

Modes: :data:`CONSUME` admits all-or-nothing: a call is admitted only when every
limit admits it, and then every new state is saved; a refused call saves
nothing, so it consumes nothing, unless the spec has an ``on_refusal`` function
(``on_refusal(state, now_us, plan, cost, token) -> (new_state, ttl_us) | None``,
Lua twin ``on_refusal``): then each limit's answer to the refusal is saved, in the
same atomic step (penalties count refusals this way, see
:mod:`limify.core.algorithms.penalty`). :data:`PEEK` reports what CONSUME would decide
and saves nothing. :data:`REFUND` refunds every limit, saves, then reports like
PEEK.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources import files
from typing import Any, NamedTuple, Optional

from limify.core.algorithms.codecs import StateCodec
from limify.core.plan import Plan
from limify.core.result import LimitationResult
from limify.errors import PlanError

__all__ = [
    "Step",
    "StepTuple",
    "Outcome",
    "Transition",
    "AlgorithmSpec",
    "run_limits",
    "to_result",
    "new_token",
    "refund_token",
    "admission_of",
    "check_cost",
    "rate_bound",
    "window_bound",
    "period_bound",
    "Refund",
    "OnRefusal",
    "Write",
    "CONSUME",
    "PEEK",
    "REFUND",
]


#: What a transition returns: ``(allowed, remaining, reset_us, retry_us, new_state,
#: ttl_us)``. The built-in transitions return plain tuples, built on every call
#: (a named tuple costs a Python-level ``__new__`` each time); :class:`Step` names
#: the same six fields for readers: ``Step(*found)``.
StepTuple = tuple[bool, int, int, int, Any, int]


class Step(NamedTuple):
    """The fields of what a transition decides for one limit (see the module docs).

    A transition may return a ``Step`` or a plain :data:`StepTuple` of the same fields.
    """

    allowed: bool
    #: Units of cost left after this call (after an admission, or as things stand).
    remaining: int
    #: Microseconds until the limit is full again (the state is back to fresh).
    reset_us: int
    #: Microseconds until the same call would be admitted (0 when admitted).
    retry_us: int
    #: The state to save when the call is admitted (the old one when refused).
    state: Any
    #: How long ``state`` stays meaningful; ``<= 0``: drop it now.
    ttl_us: int


class Outcome(NamedTuple):
    """What a store answers for one check: the most restrictive limit's decision."""

    allowed: bool
    remaining: int
    reset_us: int
    retry_us: int
    #: Index of the deciding limit among the check's plans.
    decided_by: int
    #: The instant the store decided at, on its clock (server ``TIME`` or the
    #: caller's clock), so that a later refund can name the window of its call.
    now_us: int


#: ``transition(state, now_us, plan, cost, token) -> (allowed, remaining, reset_us, retry_us, new_state, ttl_us)``
Transition = Callable[[Any, int, Plan, int, str], StepTuple]
#: ``refund(state, now_us, plan, cost, token) -> (new_state, ttl_us)``
Refund = Callable[[Any, int, Plan, int, str], tuple[Any, int]]
#: ``on_refusal(state, now_us, plan, cost, token) -> (new_state, ttl_us) | None``
OnRefusal = Callable[[Any, int, Plan, int, str], Optional[tuple[Any, int]]]
#: ``(index of the limit, new_state, ttl_us)``: a state the storage must save.
Write = tuple[int, Any, int]

#: Modes of one run (see the module docs).
CONSUME = "1"
PEEK = "0"
REFUND = "2"

_US = 1_000_000.0
_EXACT = 2**53


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm as storage adapters see it: a transition and its Lua twin."""

    name: str
    transition: Transition
    refund: Refund
    #: Package resource(s) holding the Lua twin (``load``, ``transition``, ``refund``,
    #: ``save``); several are concatenated in order, so twins can share a part.
    lua_resource: str | tuple[str, ...]
    #: The state's text (the twin of the Lua ``load``/``save``), for stores without Lua.
    codec: StateCodec = field(default=None)  # type: ignore[assignment]  # every spec sets one
    #: The per-limit ARGV the Lua twin reads as ``plan[1]``, ``plan[2]`` ... (all numbers).
    script_args: Callable[[Plan], tuple[int, ...]] = field(default=lambda plan: (plan.limit, plan.period_us))
    #: True when an admitted call holds its cost until it gives it back (a lease
    #: named by the call's token): ``@rate_limit`` then releases it when the call ends.
    lease: bool = False
    #: ``admitted_bound(plan, span_us)``: the most cost the algorithm admits (without
    #: refunds) over any span of ``span_us`` microseconds, both ends included; the
    #: invariant its theory of operation states, checked by the shared contract tests.
    admitted_bound: Callable[[Plan, int], float] = field(default=lambda plan, span: rate_bound(plan, span))
    #: Largest plan limit the algorithm accepts (``None``: up to :data:`~limify.core.plans.MAX_LIMIT`),
    #: for algorithms whose state grows with the limit; ``hint`` says what to use instead.
    max_limit: int | None = None
    max_limit_hint: str = ""
    #: What a refused CONSUME saves (see the module docs); ``None``: nothing.
    on_refusal: OnRefusal | None = None

    def check_plans(self, plans: Sequence[Plan]) -> None:
        """Raise :class:`limify.PlanError` unless every plan's limit is within :attr:`max_limit`."""
        if self.max_limit is None:
            return
        for plan in plans:
            if plan.limit > self.max_limit:
                raise PlanError(
                    f"plan {plan.id!r} ({plan.limit} per {plan.period_seconds:g}s) is above the "
                    f"{self.name} algorithm's largest limit, {self.max_limit}{self.max_limit_hint}"
                )

    @cached_property
    def script(self) -> str:
        """The full Lua script: shared prelude, the algorithm's twin, shared driver."""
        here = files("limify.core.algorithms")
        own = (self.lua_resource,) if isinstance(self.lua_resource, str) else self.lua_resource
        parts = ("prelude.lua", *own, "driver.lua")
        return "\n".join(here.joinpath(part).read_text(encoding="utf-8") for part in parts)


def rate_bound(plan: Plan, span_us: int) -> float:
    """A burst of ``limit`` plus the steady rate over the span (token bucket, GCRA, leaky bucket)."""
    return plan.limit + span_us * plan.limit / plan.period_us


def window_bound(plan: Plan, span_us: int) -> float:
    """``limit`` per aligned window the span touches: at most ``span // period + 2`` of them."""
    return plan.limit * (span_us // plan.period_us + 2)


def period_bound(plan: Plan, span_us: int) -> float:
    """``limit`` per full period: any window of one period holds at most ``limit``."""
    return plan.limit * (span_us // plan.period_us + 1)


def _more_restrictive(step: StepTuple, best: StepTuple) -> bool:
    # A refusal beats an admission; among refusals the longest wait wins; among
    # admissions the smallest remaining wins. Ties keep the earlier limit.
    if step[0] != best[0]:
        return not step[0]
    if not step[0]:
        return step[3] > best[3]
    return step[1] < best[1]


def run_limits(
    spec: AlgorithmSpec,
    states: Sequence[Any],
    now_us: int,
    plans: Sequence[Plan],
    cost: int,
    mode: str = CONSUME,
    token: str = "",
) -> tuple[Outcome, list[Write]]:
    """Run ``spec`` over every limit of one call (twin of ``driver.lua``).

    Returns the most restrictive outcome and the states the storage must save.
    """
    if len(plans) == 1 and mode != REFUND:  # one limit, the common case: one step, no tables
        step = spec.transition(states[0], now_us, plans[0], cost, token)
        allowed = step[0]
        outcome = Outcome(allowed, step[1], step[2], step[3], 0, now_us)
        if allowed or mode != CONSUME or spec.on_refusal is None:
            return outcome, [(0, step[4], step[5])] if allowed and mode == CONSUME else []
        return outcome, _refusal_writes(spec, states, now_us, plans, cost, token)
    writes: list[Write] = []
    if mode == REFUND:
        states = list(states)
        for index, plan in enumerate(plans):
            refunded, ttl = spec.refund(states[index], now_us, plan, cost, token)
            states[index] = refunded
            writes.append((index, refunded, ttl))
    steps = [
        spec.transition(state, now_us, plan, cost, token) for state, plan in zip(states, plans, strict=True)
    ]
    pick = 0
    for index in range(1, len(steps)):
        if _more_restrictive(steps[index], steps[pick]):
            pick = index
    best = steps[pick]
    allowed = all(step[0] for step in steps)
    if allowed and mode == CONSUME:
        writes = [(index, step[4], step[5]) for index, step in enumerate(steps)]
    elif mode == CONSUME and spec.on_refusal is not None:
        writes = _refusal_writes(spec, states, now_us, plans, cost, token)
    return Outcome(allowed, best[1], best[2], best[3], pick, now_us), writes


def _refusal_writes(
    spec: AlgorithmSpec, states: Sequence[Any], now_us: int, plans: Sequence[Plan], cost: int, token: str
) -> list[Write]:
    """What a refused CONSUME saves: each limit's ``on_refusal`` answer (twin of the driver's)."""
    assert spec.on_refusal is not None
    writes: list[Write] = []
    for index, plan in enumerate(plans):
        found = spec.on_refusal(states[index], now_us, plan, cost, token)
        if found is not None:
            writes.append((index, found[0], found[1]))
    return writes


def to_result(outcome: Outcome, plans: Sequence[Plan]) -> LimitationResult:
    """Turn a storage outcome into the public :class:`LimitationResult`."""
    return LimitationResult(
        bool(outcome[0]), int(outcome[1]), plans[outcome[4]].limit, outcome[2] / _US, outcome[3] / _US
    )


def new_token() -> str:
    """A fresh call token (a lease's name, a refundable call's entry): 64 random bits.

    Unique across processes for all practical purposes; hexadecimal, so it never
    contains the ``:`` that :func:`refund_token` puts before it.
    """
    return secrets.token_hex(8)


def refund_token(admitted_us: int, call_token: str) -> str:
    """The token a refund of one admitted call carries: ``"<admitted_us>:<call_token>"``.

    ``admitted_us`` is the admission's :data:`Outcome` ``now_us``: window algorithms
    give the cost back only to the window the call was counted in. ``call_token``
    is the token the admission ran with: the sliding log removes that call's own
    entry. A refund without such a token (``""`` or a plain token) cannot name its
    call, so algorithms fall back to the current window or the newest entries.
    """
    return f"{admitted_us}:{call_token}"


def admission_of(token: str) -> tuple[int | None, str]:
    """Split a :func:`refund_token` into ``(admitted_us, call_token)``; ``(None, token)`` otherwise."""
    stamp, sep, call_token = token.partition(":")
    # Below 2**53 only, where Lua's doubles (the twin in prelude.lua) are exact.
    if sep and stamp.isascii() and stamp.isdigit() and len(stamp) <= 16 and int(stamp) < _EXACT:
        return int(stamp), call_token
    return None, token


def check_cost(cost: Any, plans: Sequence[Plan], what: str = "cost") -> None:
    """Raise unless ``cost`` is an int from 1 to the smallest limit of ``plans``.

    ``what`` names the value in messages (``"cost"``, ``"the cost callable's result"``).

    Raises:
        TypeError: ``cost`` is not an int.
        ValueError: ``cost`` is below 1.
        limify.PlanError: ``cost`` is above a plan's limit (the message names the plan).
    """
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"{what} must be an int >= 1, got {cost!r}")
    if cost < 1:
        raise ValueError(f"{what} must be an int >= 1, got {cost!r}")
    if cost > min(plan.limit for plan in plans):
        plan = min(plans, key=lambda plan: plan.limit)
        raise PlanError(
            f"{what} must be between 1 and the limit of plan {plan.id!r} ({plan.limit} per "
            f"{plan.period_seconds:g}s), got {cost}: a call of that cost could never be admitted"
        )


def __getattr__(name: str) -> Any:
    # The shells and the store protocols moved (to shells.py and check.py); their
    # old names here keep working for code that imported them from this module.
    if name in ("SyncAlgorithm", "AsyncAlgorithm"):
        from limify.core.algorithms import shells

        return getattr(shells, name)
    if name in ("SyncStorage", "AsyncStorage"):
        from limify.core import check

        return getattr(check, name.replace("Storage", "Store"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
