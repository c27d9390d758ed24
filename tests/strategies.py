"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from limify import Plan
from limify.core.algorithms.base import AlgorithmSpec
from limify.core.plans import MONTH_SECONDS
from tests.histories import START, Call, calls_of, replay

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

#: Where a replay starts: the usual unaligned instant, or anywhere from 1970 to 2200.
starts_us = st.just(START) | instants_us


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


@st.composite
def replays(draw: st.DrawFn, spec: AlgorithmSpec, plans: st.SearchStrategy[Plan]) -> tuple[Plan, list[Call]]:
    """A plan and random calls replayed through ``spec`` from any start (see ``calls_of``)."""
    plan = draw(plans)
    return plan, calls_of(spec, plan, draw(call_sequences(plan)), draw(starts_us))


@st.composite
def later_refunds(draw: st.DrawFn, spec: AlgorithmSpec) -> tuple[Plan, Any, int, int]:
    """``(plan, state, now, cost)``: the state random calls leave, a refund up to a period after the last."""
    plan = draw(plans)
    history = replay(spec.transition, plan, draw(call_sequences(plan)))
    states = [step.state for _, _, step, _ in history if step.allowed]
    now = history[-1][0] + draw(st.integers(0, plan.period_us))
    return plan, states[-1] if states else None, now, draw(st.integers(1, plan.limit))


# --- Concurrency lease histories ------------------------------------------------------------

LEASE_START = 1_700_000_000_000_000
#: Few tokens, so that acquires often renew a lease the same token holds.
LEASE_TOKENS = st.sampled_from(["a", "b", "c", "d"])

#: Small limits, so that random calls fill them; periods (lease TTLs) from 1 ms to an hour.
lease_plans = st.builds(
    Plan,
    id=st.just("p"),
    limit=st.integers(1, 8),
    period_seconds=st.sampled_from([0.001, 0.25, 1, 60, 3600]),
)

#: Release targets: "@k" is the token of the k-th latest admitted acquire; others as they are.
LEASE_RELEASES = st.one_of(st.sampled_from(["@0", "@0", "@1", "@2"]), LEASE_TOKENS)


@st.composite
def lease_histories(draw: st.DrawFn, plan: Plan, size: int = 60) -> list[tuple[str, str, int, int]]:
    """Calls as (kind, token, cost, gap); see :class:`LeaseTimeline` for tokens "@k" and gaps < 0."""
    period = plan.period_us
    short = st.integers(1, max(1, period // 10))
    on_expiry = st.integers(-4, -1)
    gap = st.one_of(
        st.just(0), short, short, on_expiry, on_expiry, st.just(period), st.integers(0, 2 * period)
    )
    cost = st.integers(1, plan.limit)
    call = st.one_of(
        st.tuples(st.just("acquire"), LEASE_TOKENS, cost, gap),
        st.tuples(st.just("acquire"), LEASE_TOKENS, cost, gap),
        st.tuples(st.just("release"), LEASE_RELEASES, cost, gap),
        st.tuples(st.just("peek"), LEASE_TOKENS, cost, gap),
    )
    return draw(st.lists(call, min_size=4, max_size=size))


class LeaseTimeline:
    """Resolves a lease history's symbolic parts as its calls happen.

    A gap of ``-j`` lands exactly on the expiry of a lease taken ``j`` calls back
    (boundaries are where off-by-one bugs live); a token ``"@k"`` names the
    ``k``-th latest admitted acquire, so that releases hit leases actually held.
    """

    def __init__(self, plan: Plan, start: int = LEASE_START) -> None:
        self.period = plan.period_us
        self.now = start
        self.times: list[int] = []
        self.admitted: list[str] = []

    def advance(self, gap: int) -> int:
        """Move to the next call's time: ``gap`` µs later, or onto the expiry of call ``gap`` (< 0)."""
        if gap >= 0:
            self.now += gap
        elif self.times:
            self.now = max(self.now, self.times[max(0, len(self.times) + gap)] + self.period)
        self.times.append(self.now)
        return self.now

    def token(self, token: str) -> str:
        """The token a call names: "@k" is the k-th latest admitted one ("gone" if there is none)."""
        if not token.startswith("@"):
            return token
        back = int(token[1:])
        return self.admitted[-1 - back] if back < len(self.admitted) else "gone"

    def record(self, kind: str, token: str, allowed: bool) -> None:
        """Remember an admitted acquire, for later "@k" tokens."""
        if kind == "acquire" and allowed:
            self.admitted.append(token)
