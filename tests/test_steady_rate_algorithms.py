"""The algorithms bound by rate_bound (token bucket, leaky bucket, GCRA): a burst of limit, then a steady rate.

Derived from the registry: every algorithm whose ``admitted_bound`` is the rate
bound runs these, on top of the shared contract (tests/test_algorithm_contract.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms import ALGORITHMS
from limify.core.algorithms.base import AlgorithmSpec, rate_bound
from tests.histories import SPECS

_PROBE = Plan("p", 3, 2)
#: The specs whose bound is a burst plus the steady rate (over a 1 µs span: 3 plus a fraction).
RATE_SPECS = [spec for spec in SPECS if spec.admitted_bound(_PROBE, 1) == rate_bound(_PROBE, 1)]
each_rate_spec = pytest.mark.parametrize("spec", RATE_SPECS, ids=lambda spec: spec.name)


def test_the_rate_algorithms_are_the_three_buckets() -> None:
    """The registry's rate-bound algorithms are exactly the token bucket, the leaky bucket and GCRA."""
    assert sorted(spec.name for spec in RATE_SPECS) == ["gcra", "leaky_bucket", "token_bucket"]


@each_rate_spec
def test_a_fresh_key_bursts_the_limit_then_room_comes_back_continuously(
    spec: AlgorithmSpec, clock: ManualClock
) -> None:
    """Capacity = limit on first sight; room comes back at limit/period, fractions included."""
    algorithm = ALGORITHMS[spec.name][0](InMemoryAdapter(clock=clock))
    plan = Plan("default", 10, 60)
    results = [algorithm.check("k", plan) for _ in range(11)]
    assert [r.allowed for r in results] == [True] * 10 + [False]
    assert [r.remaining for r in results[:3]] == [9, 8, 7]
    assert results[-1].retry_after == pytest.approx(6.0)
    assert results[-1].reset_after == pytest.approx(60.0)
    clock.advance(3)  # half a unit
    assert not algorithm.check("k", plan).allowed
    clock.advance(3)
    again = algorithm.check("k", plan)
    assert again.allowed and again.remaining == 0


@each_rate_spec
def test_a_clock_stepping_back_gains_nothing(spec: AlgorithmSpec, clock: ManualClock) -> None:
    """A skewed caller whose clock is behind neither gains room nor rewinds the state."""
    algorithm = ALGORITHMS[spec.name][0](InMemoryAdapter(clock=clock))
    plan = Plan("default", 2, 10)
    assert algorithm.check("k", plan).allowed and algorithm.check("k", plan).allowed
    clock.advance(-30)
    refused = algorithm.check("k", plan)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(35.0)  # 30 s of skew + 5 s per unit
    clock.advance(35)
    assert algorithm.check("k", plan).allowed


@each_rate_spec
def test_cost_is_taken_at_once(spec: AlgorithmSpec, sync_storage: Any) -> None:
    """A call of cost c takes c units, all or none, on both stores; costs outside 1..limit are refused."""
    algorithm = ALGORITHMS[spec.name][0](sync_storage)
    plan = Plan("default", 5, 5)
    assert algorithm.check("k", plan, cost=4).remaining == 1
    refused = algorithm.check("k", plan, cost=2)
    assert not refused.allowed and refused.remaining == 1
    assert refused.retry_after == pytest.approx(1.0)
    for cost in (0, 6):
        with pytest.raises(ValueError, match="cost"):
            algorithm.check("k", plan, cost=cost)
