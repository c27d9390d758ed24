"""Quota: calendar windows in UTC (checked against datetime, in Python and in Lua) and its invariants."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan, parse_rate
from limify.core.algorithms.base import PEEK, SyncStorage
from limify.core.algorithms.quota import (
    QUOTA,
    AsyncQuotaAlgorithm,
    QuotaAlgorithm,
    civil_from_days,
    days_from_civil,
    month_window,
    transition,
)
from limify.core.redis_adapter import RedisSyncAdapter
from limify.core.check import Check
from tests.histories import admitted, replay
from tests.strategies import UTC, call_sequences, instants_us, month_plans, plans, utc

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def expected_month(moment_us: int) -> tuple[int, int]:
    """The UTC month holding an instant, by datetime: (start, end) in µs."""
    first = utc(moment_us).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return us(first), us(following)


#: Instants within a few µs of a UTC month boundary, from 1970 to 2200.
near_month_boundaries = st.builds(
    lambda day, offset: max(0, us(datetime(day.year, day.month, 1, tzinfo=UTC)) + offset),
    st.dates(min_value=date(1970, 1, 1), max_value=date(2200, 12, 1)),
    st.integers(-2, 2),
)
moments = instants_us | near_month_boundaries


@given(st.dates())
def test_day_arithmetic_matches_the_gregorian_calendar(day: date) -> None:
    """days_from_civil and civil_from_days agree with date.toordinal for years 1 to 9999."""
    days = day.toordinal() - EPOCH_ORDINAL
    assert days_from_civil(day.year, day.month, day.day) == days
    assert civil_from_days(days) == (day.year, day.month, day.day)


@given(moments)
def test_month_window_matches_datetime(moment: int) -> None:
    """The Python month window of any instant from 1970 to 2200 is datetime's UTC month."""
    assert month_window(moment) == expected_month(moment)


@given(instant=moments, limit=st.integers(1, 5))
def test_lua_month_window_matches_datetime(redis_client: redis.Redis, instant: int, limit: int) -> None:
    """On the real redis-server, a month quota's window starts and ends where datetime says."""
    redis_client.flushdb()
    start, end = expected_month(instant)
    adapter = RedisSyncAdapter(redis_client, clock=ManualClock(instant))
    plan = parse_rate(f"{limit}/month")
    assert adapter.execute(Check(QUOTA, ("limify:q",), (plan,), 1, PEEK))[2] == end - instant
    allowed, remaining, reset, retry, _, _ = adapter.execute(Check(QUOTA, ("limify:q",), (plan,), limit))
    assert (allowed, remaining, reset, retry) == (True, 0, end - instant, 0)
    assert redis_client.get("limify:q") == f"{start}:{limit}".encode()
    assert adapter.execute(Check(QUOTA, ("limify:q",), (plan,), 1))[3] == end - instant


@given(st.data(), plans | month_plans, instants_us)
def test_each_calendar_window_admits_at_most_the_limit_and_refusals_wait_for_the_next(
    data: st.DataObject, plan: Plan, start: int
) -> None:
    """Each calendar window (day, hour, month ...) admits at most limit; a refusal waits until its window ends."""
    history = replay(transition, plan, data.draw(call_sequences(plan)), start)
    assert all(step.retry_us == step.reset_us for _, _, step, _ in history if not step.allowed)
    per_window: dict[tuple[int, int], int] = {}
    for t, cost in admitted(history):
        window = expected_month(t) if plan.calendar else (t - t % plan.period_us, 0)
        per_window[window] = per_window.get(window, 0) + cost
    assert max(per_window.values()) <= plan.limit


def test_daily_quota_resets_at_midnight_utc(clock: ManualClock) -> None:
    """ "2/day" spent at 23:00 UTC comes back at 00:00 UTC, not 24 hours later."""
    clock.set(us(datetime(2024, 3, 9, 23, 0, tzinfo=UTC)))
    quota = QuotaAlgorithm(InMemoryAdapter(clock=clock))
    plan = parse_rate("2/day")
    assert quota.check("k", plan, cost=2).allowed
    refused = quota.check("k", plan)
    assert not refused.allowed and refused.retry_after == pytest.approx(3600.0)
    clock.advance(3600)
    assert quota.check("k", plan).remaining == 1


def test_hourly_quota_resets_on_the_hour(clock: ManualClock) -> None:
    """ "1/hour" used at 10:59:30 is available again at 11:00:00."""
    clock.set(us(datetime(2024, 3, 9, 10, 59, 30, tzinfo=UTC)))
    quota = QuotaAlgorithm(InMemoryAdapter(clock=clock))
    assert quota.check("k", parse_rate("1/hour")).reset_after == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("moment", "days_to_reset"),
    [
        (datetime(2024, 2, 1, tzinfo=UTC), 29),  # leap February
        (datetime(2023, 2, 1, tzinfo=UTC), 28),
        (datetime(2100, 2, 1, tzinfo=UTC), 28),  # century year: not leap
        (datetime(2000, 2, 1, tzinfo=UTC), 29),  # 400th year: leap
        (datetime(2024, 12, 1, tzinfo=UTC), 31),  # December -> January
        (datetime(2024, 4, 1, tzinfo=UTC), 30),
    ],
)
def test_monthly_quota_resets_on_the_first(
    sync_storage: SyncStorage, clock: ManualClock, moment: datetime, days_to_reset: int
) -> None:
    """ "3/month" resets at 00:00 UTC on the 1st, after the month's own length, in memory and on Redis."""
    clock.set(us(moment))
    quota = QuotaAlgorithm(sync_storage)
    plan = parse_rate("3/month")
    assert quota.check("k", plan, cost=3).reset_after == pytest.approx(days_to_reset * 86400)
    clock.advance(days_to_reset * 86400 - 1)
    assert not quota.check("k", plan).allowed
    clock.advance(1)
    assert quota.check("k", plan, cost=3).allowed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis.asyncio runs on asyncio only
async def test_async_shell_on_redis_counts_the_month(redis_async_adapter: object, clock: ManualClock) -> None:
    """AsyncQuotaAlgorithm on RedisAsyncAdapter keeps a month's count and resets on the 1st."""
    clock.set(us(datetime(2024, 2, 29, 12, tzinfo=UTC)))
    quota = AsyncQuotaAlgorithm(redis_async_adapter)  # type: ignore[arg-type]
    plan = parse_rate("2/month")
    assert [(await quota.check("limify:q", plan)).allowed for _ in range(3)] == [True, True, False]
    clock.advance(12 * 3600)
    assert (await quota.check("limify:q", plan)).remaining == 1
