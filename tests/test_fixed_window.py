"""Fixed window: aligned windows, refunds to the caller's own window, skewed clocks (the contract is shared)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms.fixed_window import FixedWindowAlgorithm, transition
from tests.histories import admitted, replay
from tests.strategies import call_sequences, plans


@given(st.data())
def test_each_aligned_window_admits_at_most_the_limit_and_refusals_wait_for_the_next(
    data: st.DataObject,
) -> None:
    """Each aligned window admits at most limit; a refused call waits exactly until its window ends."""
    plan = data.draw(plans)
    history = replay(transition, plan, data.draw(call_sequences(plan)))
    assert all(step.retry_us == step.reset_us for _, _, step, _ in history if not step.allowed)
    per_window: dict[int, int] = {}
    for t, cost in admitted(history):
        per_window[t // plan.period_us] = per_window.get(t // plan.period_us, 0) + cost
    assert max(per_window.values()) <= plan.limit


def test_windows_are_aligned_to_the_period(clock: ManualClock) -> None:
    """A minute window opens on the minute: 3 calls, a refusal, then a fresh window at :00."""
    clock.set(1_700_000_020_000_000)  # 40 s into a minute
    algorithm = FixedWindowAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 3, 60)
    assert [algorithm.check("k", plan).remaining for _ in range(3)] == [2, 1, 0]
    refused = algorithm.check("k", plan)
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after == refused.reset_after == pytest.approx(20.0)
    clock.advance(20)
    assert algorithm.check("k", plan).remaining == 2


def test_refund_of_a_closed_window_gives_nothing(clock: ManualClock) -> None:
    """A refund reaching a window that rolled over cannot raise the new window's allowance."""
    clock.set(1_700_000_020_000_000)  # 40 s into a minute
    algorithm = FixedWindowAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 3, 60)
    algorithm.check("k", plan, cost=3)
    assert algorithm.refund("k", plan, cost=2).remaining == 0  # 1 used + a peek of 2
    algorithm.check("k", plan, cost=2)
    clock.advance(20)
    algorithm.refund("k", plan, cost=3)
    assert [algorithm.check("k", plan).allowed for _ in range(4)] == [True, True, True, False]


def test_clock_stepping_back_never_reopens_a_window(clock: ManualClock) -> None:
    """A skewed caller behind the writer still sees the later window's count."""
    clock.set(1_700_000_020_000_000)  # 40 s into a minute
    algorithm = FixedWindowAlgorithm(InMemoryAdapter(clock=clock))
    plan = Plan("default", 2, 60)
    clock.advance(30)  # next window, 10 s in
    algorithm.check("k", plan, cost=2)
    clock.advance(-30)  # back in the previous window
    refused = algorithm.check("k", plan)
    assert not refused.allowed and refused.retry_after == pytest.approx(80.0)
