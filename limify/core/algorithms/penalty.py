"""Penalties: block an identity for a while after too many refusals, in the same atomic step.

Theory of operation
-------------------
A penalty is one more limit in a check: its key counts the check's *refusals*.
``Penalty(after="5/minute", block="1 hour")`` blocks a key for an hour once five
requests were refused within a minute. It is not an algorithm of its own but a
wrapper: :func:`penalized` turns any algorithm's spec into one whose checks may
carry :class:`PenaltyPlan` limits (Lua: ``penalty.lua``, concatenated after the
algorithm's twin, dispatches the same way on the limit's last parameter, 1 for a
penalty). Everything stays one transition, one refund, one codec, so every store
that runs specs (memory under its lock, Redis in one script, stores that keep
codec text in a transaction) runs penalties atomically with the check, for free.

State per penalty key: ``(start_us, refusals, until_us)``, the refusals counted
in the window opened by the first of them at ``start_us`` (one ``period`` long),
and the end of the current block (0: none).

* **transition** (any mode): while ``now < until`` the penalty refuses, retry and
  reset being the block's remaining time, so the whole check is refused and
  consumes nothing; otherwise it admits with room to spare (:data:`ROOM`, so it
  is never the most restrictive admission).
* **on_refusal** (a refused CONSUME, see :mod:`limify.core.algorithms.base`):
  outside a block, the refusal is counted, in a fresh window when the last one
  is over; the ``limit``-th refusal of a window starts a block of ``block_us``
  and a fresh count. Refusals during a block are not counted: a block ends on time.
* **refund**: changes nothing (a refund gives back cost; refusals cost nothing).

The state lives until the later of the block's end and the window's end (its
TTL), after which it is the same as none. Admissions never change it. All
arithmetic is on integers below 2**53, so Lua and Python agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from limify.core.algorithms.base import AlgorithmSpec, StepTuple
from limify.core.algorithms.codecs import NumbersCodec, StateCodec
from limify.core.plan import MAX_PERIOD_SECONDS, Plan
from limify.core.rate import parse_duration, parse_rate

__all__ = ["Penalty", "PenaltyPlan", "PenaltyState", "penalized", "ROOM", "PENALTY_CODEC"]

#: What an unblocked penalty reports as remaining: more than any limit, so it never decides.
ROOM = 10**15


@dataclass(frozen=True, slots=True)
class PenaltyPlan(Plan):
    """A penalty as a limit of a check: ``limit`` refusals per ``period_seconds``, then ``block_seconds``."""

    block_seconds: float = 60.0
    block_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        Plan.__post_init__(self)
        block = self.block_seconds
        if (
            isinstance(block, bool)
            or not isinstance(block, (int, float))
            or not 0 < block <= MAX_PERIOD_SECONDS
        ):
            raise ValueError(
                f"penalty block must be a number of seconds > 0 and <= {MAX_PERIOD_SECONDS}, got {block!r}"
            )
        object.__setattr__(self, "block_us", max(1, round(block * 1_000_000)))


@dataclass(frozen=True)
class Penalty:
    """Block an identity for ``block`` after ``after`` refusals (e.g. ``"5/minute"``: five within a minute).

    ``block`` is seconds, or a duration such as ``"1 hour"``, ``"10m"``, ``"30 seconds"``.

    Raises:
        ValueError, TypeError: a bad ``after`` rate or ``block`` duration, named in the message.
    """

    after: str
    block: float | str
    plan: PenaltyPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            counted = parse_rate(self.after) if isinstance(self.after, str) else None
        except ValueError as exc:
            raise ValueError(f"penalty after={self.after!r}: {exc}") from None
        if counted is None:
            raise TypeError(f"penalty after= must be a rate string such as '5/minute', got {self.after!r}")
        if counted.calendar is not None:
            raise ValueError(f"penalty after={self.after!r}: count refusals over seconds to days, not months")
        try:
            seconds = parse_duration(self.block)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"penalty block={self.block!r}: {exc}") from None
        plan = PenaltyPlan("penalty", counted.limit, counted.period_seconds, block_seconds=seconds)
        object.__setattr__(self, "plan", plan)

    @classmethod
    def from_value(cls, value: Any) -> Penalty:
        """A penalty from a :class:`Penalty` or a dict ``{"after": "5/minute", "block": "1 hour"}``."""
        if isinstance(value, Penalty):
            return value
        if isinstance(value, dict) and set(value) == {"after", "block"}:
            return cls(value["after"], value["block"])
        raise TypeError(
            "penalty must be a limify.Penalty or a dict {'after': '5/minute', 'block': '1 hour'}, "
            f"got {value!r}"
        )


class PenaltyState(NamedTuple):
    """``(start_us, refusals, until_us)`` (see the module docs)."""

    start_us: int
    refusals: int
    until_us: int


def _ttl(state: PenaltyState | None, now: int, plan: PenaltyPlan) -> int:
    if state is None:
        return 0
    return max(state.until_us - now, state.start_us + plan.period_us - now)


def penalty_transition(state: PenaltyState | None, now: int, plan: PenaltyPlan) -> StepTuple:
    """Refuse while blocked; otherwise admit with :data:`ROOM` (twin of ``penalty_transition`` in the Lua)."""
    ttl = _ttl(state, now, plan)
    if state is not None and state.until_us > now:
        left = state.until_us - now
        return (False, 0, left, left, state, ttl)
    return (True, ROOM, 0, 0, state, ttl)


def penalty_on_refusal(state: PenaltyState | None, now: int, plan: PenaltyPlan) -> tuple[Any, int] | None:
    """Count a refusal; the ``limit``-th in a window starts a block (twin of ``penalty_on_refusal``)."""
    if state is not None and state.until_us > now:
        return None
    if state is None or now >= state.start_us + plan.period_us:
        start, refusals = now, 1
    else:
        start, refusals = state.start_us, state.refusals + 1
    if refusals >= plan.limit:
        counted = PenaltyState(now, 0, now + plan.block_us)
    else:
        counted = PenaltyState(start, refusals, 0)
    return counted, _ttl(counted, now, plan)


#: The penalty state's text: ``p<start>:<refusals>:<until>`` (the ``p`` tells it from the algorithm's).
PENALTY_CODEC = NumbersCodec("p%d:%d:%d")


class PenalizedCodec:
    """The codec of a penalized spec: the algorithm's text, or :data:`PENALTY_CODEC`'s for penalty keys."""

    def __init__(self, inner: StateCodec) -> None:
        self.inner = inner
        self.redis_kind = inner.redis_kind

    def dumps(self, state: Any) -> str:
        return PENALTY_CODEC.dumps(state) if isinstance(state, PenaltyState) else self.inner.dumps(state)

    def loads(self, text: str) -> Any:
        if text.startswith("p"):
            found = PENALTY_CODEC.loads(text)
            return None if found is None else PenaltyState(*found)
        return self.inner.loads(text)

    def __repr__(self) -> str:
        return f"PenalizedCodec({self.inner!r})"


@lru_cache(maxsize=None)
def penalized(inner: AlgorithmSpec) -> AlgorithmSpec:
    """``inner``'s spec, able to run :class:`PenaltyPlan` limits beside its own (see the module docs)."""
    width = max(len(inner.script_args(Plan("width", 1, 1))), 3)

    def transition(state: Any, now: int, plan: Plan, cost: int, token: str) -> StepTuple:
        if type(plan) is PenaltyPlan:
            return penalty_transition(state, now, plan)
        return inner.transition(state, now, plan, cost, token)

    def refund(state: Any, now: int, plan: Plan, cost: int, token: str) -> tuple[Any, int]:
        if type(plan) is PenaltyPlan:
            return state, _ttl(state, now, plan)
        return inner.refund(state, now, plan, cost, token)

    def on_refusal(state: Any, now: int, plan: Plan, cost: int, token: str) -> tuple[Any, int] | None:
        if type(plan) is PenaltyPlan:
            return penalty_on_refusal(state, now, plan)
        return None if inner.on_refusal is None else inner.on_refusal(state, now, plan, cost, token)

    def script_args(plan: Plan) -> tuple[int, ...]:
        # One width for every limit of a check; the last parameter says which kind it is.
        if type(plan) is PenaltyPlan:
            own: tuple[int, ...] = (plan.limit, plan.period_us, plan.block_us)
        else:
            own = inner.script_args(plan)
        return (*own, *(0,) * (width - len(own)), 1 if type(plan) is PenaltyPlan else 0)

    own_lua = (inner.lua_resource,) if isinstance(inner.lua_resource, str) else inner.lua_resource
    return AlgorithmSpec(
        f"{inner.name}+penalty",
        transition,
        refund,
        (*own_lua, "penalty.lua"),
        PenalizedCodec(inner.codec),
        script_args=script_args,
        lease=inner.lease,
        admitted_bound=inner.admitted_bound,
        max_limit=inner.max_limit,
        max_limit_hint=inner.max_limit_hint,
        on_refusal=on_refusal,
    )
