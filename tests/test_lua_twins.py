"""Differential tests: each Python transition and its Lua twin decide identically.

The same random calls go through the in-memory adapter (Python) and through the
real redis-server (Lua), both on one manual clock; every outcome must match
exactly: admission, remaining, reset and retry to the microsecond. Calls carry
tokens drawn from a small set, so that algorithms keyed by token (concurrency
leases, sliding-log entries) see the same token acquire, renew and release;
refunds may also name their call as the decorator does, with the instant of an
earlier call (``refund_token``), which window algorithms read. Derived from the
algorithm registry, so a new algorithm is covered by adding it there.
"""

from __future__ import annotations

import redis
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms.base import CONSUME, PEEK, REFUND, AlgorithmSpec, refund_token
from limify.core.redis_adapter import RedisSyncAdapter
from limify.core.check import Check
from tests.histories import each_spec
from tests.strategies import gaps_us, instants_us, month_plans, plans

#: Few tokens, so that the same one comes back (renewals, releases, double releases).
TOKENS = st.sampled_from(["", "a", "b", "c"])


@each_spec
@given(
    data=st.data(),
    limits=st.lists(plans | month_plans, min_size=1, max_size=3),
    start=st.just(ManualClock().now_us()) | instants_us,
)
def test_python_and_lua_agree_on_every_decision(
    redis_client: redis.Redis, spec: AlgorithmSpec, data: st.DataObject, limits: list[Plan], start: int
) -> None:
    """Random (key, cost, gap, mode, token) sequences, refunds included, give identical outcomes."""
    redis_client.flushdb()
    limits = [Plan(f"p{i}", p.limit, p.period_seconds, p.calendar) for i, p in enumerate(limits)]
    clock = ManualClock(start)
    memory = InMemoryAdapter(clock=clock)
    remote = RedisSyncAdapter(redis_client, clock=clock)
    smallest = min(p.limit for p in limits)
    calls = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, 2),
                st.integers(1, smallest),
                gaps_us,
                st.sampled_from([CONSUME, CONSUME, CONSUME, PEEK, REFUND]),
                TOKENS,
                st.none() | st.integers(0, 5),
            ),
            min_size=1,
            max_size=40,
        )
    )
    instants: list[int] = []
    for key_index, cost, gap, mode, token, back in calls:
        clock.advance(us=gap)
        instants.append(clock.now_us())
        if mode == REFUND and back is not None:
            # A refund naming a call made `back` calls ago (possibly in an earlier window).
            token = refund_token(instants[max(0, len(instants) - 1 - back)], token)
        keys = [f"limify:diff:p{i}:{key_index}" for i in range(len(limits))]
        check = Check(spec, tuple(keys), tuple(limits), cost, mode, token)
        expected = memory.execute(check)
        actual = remote.execute(check)
        assert actual == expected, (key_index, cost, gap, mode, token)
