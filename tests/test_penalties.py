"""Penalties: after N refusals within a window an identity is blocked for a period, atomically with the check.

The penalty wraps every registered algorithm (``penalized(spec)``): the same random
checks, with a penalty key beside the limits' keys, go through the in-memory store
(Python) and redis-server (the Lua twin) on one manual clock and must decide
identically; the penalty key's Redis text must be what the codec writes.
"""

from __future__ import annotations

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms.base import CONSUME, PEEK, REFUND, AlgorithmSpec, run_limits
from limify.core.algorithms.fixed_window import FIXED_WINDOW
from limify.core.algorithms.penalty import (
    PENALTY_CODEC,
    Penalty,
    PenaltyPlan,
    PenaltyState,
    penalized,
)
from limify.core.check import Check
from limify.core.redis_adapter import RedisSyncAdapter
from tests.histories import each_spec
from tests.strategies import gaps_us, month_plans, plans

TOKENS = st.sampled_from(["", "a", "b"])
penalties = st.builds(
    PenaltyPlan,
    id=st.just("penalty"),
    limit=st.integers(1, 4),
    period_seconds=st.sampled_from([0.5, 1, 60]),
    block_seconds=st.sampled_from([0.25, 2, 600]),
)


@each_spec
@given(
    data=st.data(),
    limits=st.lists(plans | month_plans, min_size=1, max_size=2),
    penalty=penalties,
)
def test_python_and_lua_agree_with_a_penalty(
    redis_client: redis.Redis,
    spec: AlgorithmSpec,
    data: st.DataObject,
    limits: list[Plan],
    penalty: PenaltyPlan,
) -> None:
    """Random checks over limits plus a penalty give identical outcomes; the penalty text is the codec's."""
    redis_client.flushdb()
    wrapped = penalized(spec)
    limits = [Plan(f"p{i}", max(p.limit, 1), p.period_seconds, p.calendar) for i, p in enumerate(limits)]
    clock = ManualClock()
    memory = InMemoryAdapter(clock=clock)
    remote = RedisSyncAdapter(redis_client, clock=clock)
    smallest = min(p.limit for p in limits)
    calls = data.draw(
        st.lists(
            st.tuples(
                st.integers(1, smallest + 1), gaps_us, st.sampled_from([CONSUME] * 4 + [PEEK, REFUND]), TOKENS
            ),
            min_size=1,
            max_size=30,
        )
    )
    keys = (*(f"limify:pen:{i}" for i in range(len(limits))), "limify:pen:penalty")
    for cost, gap, mode, token in calls:
        clock.advance(us=gap)
        check = Check(
            wrapped, keys, (*limits, penalty), min(cost, smallest), mode, token or ("t" if spec.lease else "")
        )
        assert remote.execute(check) == memory.execute(check), (cost, gap, mode, token)
        entry = memory._data.get(keys[-1])
        live = entry[0] if entry is not None and entry[1] > clock.now_us() else None
        raw = redis_client.get(keys[-1])
        if live is not None:
            assert raw is not None and raw.decode() == wrapped.codec.dumps(live)
            assert wrapped.codec.loads(raw.decode()) == live


def _refused_then_blocked(storage: object, clock: ManualClock) -> list[tuple[bool, float]]:
    """1/minute plus "2 refusals within a minute, then 10 minutes": what ten calls 1 s apart get."""
    spec = penalized(FIXED_WINDOW)
    plans = (Plan("default", 1, 60), Penalty("2/minute", "10 minutes").plan)
    check = Check(spec, ("limify:t:limit", "limify:t:penalty"), plans)
    seen = []
    for _ in range(10):
        outcome = storage.execute(check)  # type: ignore[attr-defined]
        seen.append((outcome.allowed, outcome.retry_us / 1e6))
        clock.advance(1)
    return seen


def test_the_nth_refusal_starts_a_block(sync_storage: object, clock: ManualClock) -> None:
    """Admitted, refused twice (the window's own wait), then blocked: the wait is the block's rest."""
    clock.set(1_800_000_000)  # the start of a minute, so the window wait is plain to read
    seen = _refused_then_blocked(sync_storage, clock)
    assert seen[:3] == [(True, 0.0), (False, 59.0), (False, 58.0)]
    assert seen[3:] == [(False, 600.0 - s) for s in range(1, 8)]


def test_a_block_ends_on_time_whatever_the_client_does(sync_storage: object, clock: ManualClock) -> None:
    """Refusals during a block are not counted: it ends block_seconds after it began."""
    clock.set(1_800_000_000)
    spec = penalized(FIXED_WINDOW)
    plans = (Plan("default", 1, 60), Penalty("1/minute", 30).plan)
    check = Check(spec, ("limify:e:limit", "limify:e:penalty"), plans)
    assert sync_storage.execute(check).allowed  # type: ignore[attr-defined]
    assert sync_storage.execute(check).retry_us == 60_000_000  # type: ignore[attr-defined]  # counted: block starts
    for _ in range(29):
        clock.advance(1)
        assert not sync_storage.execute(check).allowed  # type: ignore[attr-defined]
    clock.advance(31)  # the window (and the limit) reopened at 60 s, the block ended at 30 s
    assert sync_storage.execute(check).allowed  # type: ignore[attr-defined]


def test_refusals_outside_the_window_start_a_fresh_count(sync_storage: object, clock: ManualClock) -> None:
    """Two refusals more than the window apart never add up to a block of "2 per 5 seconds"."""
    spec = penalized(FIXED_WINDOW)
    plans = (Plan("default", 1, 3600), Penalty("2 per 5 seconds", 600).plan)
    check = Check(spec, ("limify:w:limit", "limify:w:penalty"), plans)
    assert sync_storage.execute(check).allowed  # type: ignore[attr-defined]
    for _ in range(4):
        clock.advance(6)
        outcome = sync_storage.execute(check)  # type: ignore[attr-defined]
        assert not outcome.allowed and outcome.decided_by == 0  # the limit refuses, never the penalty


@given(
    refusals=st.integers(1, 5),
    gaps=st.lists(st.integers(0, 3_000_000), min_size=1, max_size=40),
)
def test_blocks_follow_the_counting_rule(refusals: int, gaps: list[int]) -> None:
    """A model of the rule (count refusals in a window from the first; the n-th blocks) predicts every answer."""
    spec = penalized(FIXED_WINDOW)
    penalty = PenaltyPlan("penalty", refusals, 2, block_seconds=1)
    plans = (Plan("default", 1, 0.5), penalty)  # calls closer than the window are refused
    now, states = 1_800_000_000_000_000, [None, None]
    start, counted, until = 0, 0, 0
    for gap in gaps:
        now += gap
        outcome, writes = run_limits(spec, states, now, plans, 1)
        blocked = until > now
        if blocked:  # refused, and by the block when it is the longer wait
            assert not outcome.allowed and (outcome.decided_by == 1) == (outcome.retry_us == until - now)
        for index, state, _ in writes:
            states[index] = state
        if not outcome.allowed and not blocked:
            start, counted = (start, counted + 1) if now < start + 2_000_000 else (now, 1)
            until = 0
            if counted >= refusals:
                start, counted, until = now, 0, now + 1_000_000
        if counted or until > now:
            assert states[1] == PenaltyState(start, counted, until)


def test_penalty_arguments_are_checked_when_declared() -> None:
    """A bad rate or duration is a ValueError naming it; months and non-strings are refused."""
    assert Penalty("5/minute", "1 hour").plan == PenaltyPlan("penalty", 5, 60, block_seconds=3600)
    assert Penalty.from_value({"after": "3 per 10 seconds", "block": 90}).plan.block_us == 90_000_000
    for after, block, words in [
        ("5 a minute", 60, "penalty after='5 a minute'"),
        ("5/month", 60, "not months"),
        ("5/minute", "forever", "penalty block='forever'"),
        ("5/minute", 0, "> 0"),
        ("5/minute", 10**9, "<= "),
    ]:
        with pytest.raises(ValueError, match=words):
            Penalty(after, block)
    with pytest.raises(TypeError):
        Penalty.from_value("5/minute")


def test_the_penalty_codec_round_trips() -> None:
    """p<start>:<refusals>:<until> reads back to the state it was written from; other text is not a penalty."""
    state = PenaltyState(1_700_000_000_000_001, 2, 0)
    assert PENALTY_CODEC.dumps(state) == "p1700000000000001:2:0"
    codec = penalized(FIXED_WINDOW).codec
    assert codec.loads(codec.dumps(state)) == state and codec.loads("12:3") == (12, 3)
