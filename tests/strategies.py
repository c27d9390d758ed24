"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from limify import Plan
from limify.core.plans import MONTH_SECONDS

#: Plans small enough to exhaust quickly, with periods from 1 ms to a day.
plans = st.builds(
    Plan,
    id=st.just("p"),
    limit=st.integers(1, 50),
    period_seconds=st.sampled_from([0.001, 0.25, 1, 7, 60, 3600, 86400]),
)

#: Calendar-month plans, as ``parse_rate("<n>/month")`` builds them.
month_plans = st.builds(
    Plan,
    id=st.just("p"),
    limit=st.integers(1, 50),
    period_seconds=st.just(MONTH_SECONDS),
    calendar=st.just("month"),
)

#: Gaps between successive calls, in microseconds: bursts, jitter and long idles.
gaps_us = st.one_of(
    st.just(0),
    st.integers(0, 2_000),
    st.integers(0, 2_000_000),
    st.integers(0, 100_000_000_000),
)

_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
#: UTC, spelled so that it works on Python 3.10 (``datetime.UTC`` is 3.11+).
UTC = timezone(timedelta(0))

#: Instants (µs since the epoch, UTC) from 1970 to 2200: leap years, century
#: years and every month boundary are fair game.
instants_us = st.datetimes(min_value=_EPOCH, max_value=datetime(2200, 12, 31, 23, 59, 59, 999_999)).map(
    lambda moment: (moment - _EPOCH) // _US
)


def utc(moment_us: int) -> datetime:
    """The aware UTC datetime of an instant in µs since the epoch."""
    return (_EPOCH + moment_us * _US).replace(tzinfo=UTC)


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
