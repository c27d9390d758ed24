"""Replaying random call sequences through a pure transition, for the property tests."""

from __future__ import annotations

from typing import Any

from limify import Plan
from limify.core.algorithms.base import Step, Transition

#: The start of every replay: an arbitrary instant, not aligned to any period.
START = 1_700_000_000_123_457


def replay(
    transition: Transition, plan: Plan, calls: list[tuple[int, int, int]], start: int = START
) -> list[tuple[int, int, Step, Any]]:
    """Run calls through ``transition``; return ``(now, cost, step, state before)`` for each."""
    state = None
    now = start
    out = []
    for _, cost, gap in calls:
        now += gap
        step = transition(state, now, plan, cost, "")
        out.append((now, cost, step, state))
        if step[0]:
            state = step[4]
    return out


def admitted(history: list[tuple[int, int, Step, Any]]) -> list[tuple[int, int]]:
    """``(time, cost)`` of the admitted calls of a replay."""
    return [(now, cost) for now, cost, step, _ in history if step[0]]
