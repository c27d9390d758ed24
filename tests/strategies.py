"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

from hypothesis import strategies as st

from limify import Plan

#: Plans small enough to exhaust quickly, with periods from 1 ms to a day.
plans = st.builds(
    Plan,
    id=st.just("p"),
    limit=st.integers(1, 50),
    period_seconds=st.sampled_from([0.001, 0.25, 1, 7, 60, 3600, 86400]),
)

#: Gaps between successive calls, in microseconds: bursts, jitter and long idles.
gaps_us = st.one_of(
    st.just(0),
    st.integers(0, 2_000),
    st.integers(0, 2_000_000),
    st.integers(0, 100_000_000_000),
)


@st.composite
def call_sequences(draw: st.DrawFn, plan: Plan, keys: int = 1, size: int = 60) -> list[tuple[int, int, int]]:
    """Calls as (key index, cost, gap since the previous call in µs)."""
    return draw(
        st.lists(
            st.tuples(st.integers(0, keys - 1), st.integers(1, plan.limit), gaps_us),
            min_size=1,
            max_size=size,
        )
    )
