"""Replaying random call sequences through a pure transition, for the property tests."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from limify import Plan
from limify.core.algorithms import ALGORITHMS
from limify.core.algorithms.base import AlgorithmSpec, Step, Transition, refund_token

#: The start of every replay: an arbitrary instant, not aligned to any period.
START = 1_700_000_000_123_457
#: Every registered algorithm's spec, in registry order: what the shared tests run over.
SPECS = [classes[0].spec for classes in ALGORITHMS.values()]
#: Parametrises a test over every registered algorithm (argument ``spec``, ids the algorithms' names).
each_spec = pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
#: The token of a call made only to see a decision (never one a replayed call holds).
PROBE = "probe"


def replay(
    transition: Transition, plan: Plan, calls: list[tuple[int, int, int]], start: int = START
) -> list[tuple[int, int, Step, Any]]:
    """Run calls through ``transition``; return ``(now, cost, step, state before)`` for each."""
    state = None
    now = start
    out = []
    for _, cost, gap in calls:
        now += gap
        step = Step(*transition(state, now, plan, cost, ""))
        out.append((now, cost, step, state))
        if step[0]:
            state = step[4]
    return out


def admitted(history: list[tuple[int, int, Step, Any]]) -> list[tuple[int, int]]:
    """``(time, cost)`` of the admitted calls of a replay."""
    return [(now, cost) for now, cost, step, _ in history if step[0]]


class Call(NamedTuple):
    """One replayed call of :func:`calls_of`."""

    now: int
    cost: int
    #: The call's own token (a lease's name; the entry a refund finds).
    token: str
    step: Step
    #: The state the call met.
    before: Any


def calls_of(
    spec: AlgorithmSpec, plan: Plan, calls: list[tuple[int, int, int]], start: int = START
) -> list[Call]:
    """Run calls through ``spec.transition``, each with a token of its own, as the decorator gives them."""
    state = None
    now = start
    out = []
    for index, (_, cost, gap) in enumerate(calls):
        now += gap
        token = f"call{index}"
        step = Step(*spec.transition(state, now, plan, cost, token))
        out.append(Call(now, cost, token, step, state))
        if step.allowed:
            state = step.state
    return out


def decide(spec: AlgorithmSpec, state: Any, now: int, plan: Plan, cost: int) -> tuple[int, ...]:
    """What a new call (one holding nothing) would be told: (allowed, remaining, reset_us, retry_us)."""
    return tuple(spec.transition(state, now, plan, cost, PROBE)[:4])


def give_back_token(spec: AlgorithmSpec, admitted_us: int, call_token: str) -> str:
    """The token that gives an admitted call back: its lease's name, or its refund token."""
    return call_token if spec.lease else refund_token(admitted_us, call_token)
