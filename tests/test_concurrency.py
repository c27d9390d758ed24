"""Concurrency limit: the pure transition's invariants, proven over random lease histories."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from limify import Plan
from limify.core.algorithms.base import Step
from limify.core.algorithms.concurrency import Leases, refund, transition
from tests.strategies import LEASE_START, LEASE_TOKENS, LeaseTimeline, lease_histories, lease_plans


def model_step(leases: dict[str, tuple[int, int]], now: int, plan: Plan, cost: int, token: str) -> tuple:
    """The decision, computed naively from the definition: (allowed, remaining, reset, retry)."""

    def others_at(t: int) -> int:
        return sum(c for holder, (e, c) in leases.items() if e > t and holder != token)

    live = [(e, c) for e, c in leases.values() if e > now]
    in_flight = sum(c for _, c in live)
    if others_at(now) + cost <= plan.limit:
        last = max(
            [e for holder, (e, c) in leases.items() if e > now and holder != token] + [now + plan.period_us]
        )
        return True, plan.limit - others_at(now) - cost, last - now, 0
    # The first expiry after which the call fits, found by trying each one.
    retry = next(e - now for e in sorted({e for e, _ in live}) if others_at(e) + cost <= plan.limit)
    return False, max(0, plan.limit - in_flight), max(e for e, _ in live) - now, retry


History = list[tuple[Any, Any, int, str, str, int, Step]]


def run(plan: Plan, calls: list[tuple[str, str, int, int]]) -> History:
    """Replay calls on the pure functions: (state before, state after, now, kind, token, cost, step)."""
    state: Leases | None = None
    timeline = LeaseTimeline(plan)
    out = []
    for kind, symbolic, cost, gap in calls:
        now = timeline.advance(gap)
        token = timeline.token(symbolic)
        before = state
        if kind == "release":
            state, _ = refund(state, now, plan, cost, token)
        step = transition(state, now, plan, cost, token)
        if kind == "acquire" and step[0]:
            state = step[4]
        timeline.record(kind, token, step[0])
        out.append((before, state, now, kind, token, cost, step))
    return out


@given(st.data())
def test_decisions_match_a_naive_model_of_leases(data: st.DataObject) -> None:
    """Admission, remaining, reset and retry equal what the lease definition gives, computed naively."""
    plan = data.draw(lease_plans)
    leases: dict[str, tuple[int, int]] = {}
    for _, _, now, kind, token, cost, step in run(plan, data.draw(lease_histories(plan))):
        if kind == "release":
            leases.pop(token, None)
        assert step[:4] == model_step(leases, now, plan, cost, token)
        if kind == "acquire" and step[0]:
            leases[token] = (now + plan.period_us, cost)


@given(st.data())
def test_never_more_than_limit_in_flight(data: st.DataObject) -> None:
    """At every instant the admitted, unreleased, unexpired calls hold at most `limit`."""
    plan = data.draw(lease_plans)
    held: dict[str, tuple[int, int]] = {}  # token -> (admitted at, cost), ended by release/renewal
    for _, _, now, kind, token, cost, step in run(plan, data.draw(lease_histories(plan))):
        if kind == "release":
            held.pop(token, None)
        if kind == "acquire" and step[0]:
            held[token] = (now, cost)
        in_flight = sum(c for start, c in held.values() if start + plan.period_us > now)
        assert in_flight <= plan.limit
        if kind == "acquire" and step[0]:
            assert step[1] == plan.limit - in_flight


@given(st.data())
def test_retry_after_is_exact(data: st.DataObject) -> None:
    """A refused acquire is admitted at now + retry_after (no releases), and refused 1 µs before."""
    plan = data.draw(lease_plans)
    for before, _, now, kind, token, cost, step in run(plan, data.draw(lease_histories(plan))):
        if kind != "acquire":
            continue
        if step[0]:
            assert step[3] == 0
            continue
        assert step[4] is before  # a refused acquire changes nothing
        retry = step[3]
        assert 0 < retry <= plan.period_us
        assert transition(before, now + retry, plan, cost, token)[0]
        assert not transition(before, now + retry - 1, plan, cost, token)[0]


@given(st.data())
def test_expired_leases_free_their_slots(data: st.DataObject) -> None:
    """At now + reset_after every lease has expired: the whole limit is free again."""
    plan = data.draw(lease_plans)
    for _, after, now, kind, _, _, step in run(plan, data.draw(lease_histories(plan))):
        reset = step[2]
        fresh = transition(after, now + reset, plan, plan.limit, "someone-else")
        assert fresh[0] and fresh[1] == 0
        if kind == "acquire" and step[0]:
            assert step[5] == reset > 0  # the state's TTL: until its last lease expires


@given(st.data(), LEASE_TOKENS)
def test_release_is_idempotent(data: st.DataObject, token: str) -> None:
    """Releasing twice leaves what releasing once left; releasing an unknown token frees nothing."""
    plan = data.draw(lease_plans)
    for _, after, now, _, _, _, _ in run(plan, data.draw(lease_histories(plan))):
        once, ttl_once = refund(after, now, plan, 1, token)
        assert refund(once, now, plan, 1, token) == (once, ttl_once)
        if after is None or token not in after.by_token:
            for probe in range(1, plan.limit + 1):
                assert (
                    transition(once, now, plan, probe, "x")[:4]
                    == transition(after, now, plan, probe, "x")[:4]
                )


def test_acquire_with_a_held_token_renews_without_double_counting() -> None:
    """The same token twice holds one lease: its cost is replaced and its expiry pushed back."""
    plan = Plan("p", 3, 10)
    first = transition(None, LEASE_START, plan, 2, "a")
    assert first[:2] == (True, 1)
    # From cost 2 to 3 fits a limit of 3: the 2 already held are this token's own.
    renewed = transition(first[4], LEASE_START + 4_000_000, plan, 3, "a")
    assert renewed[:3] == (True, 0, 10_000_000)
    assert not transition(renewed[4], LEASE_START + 13_000_000, plan, 1, "b")[0]  # renewed lease still held
    refused = transition(renewed[4], LEASE_START + 5_000_000, plan, 4, "a")
    assert not refused[0] and refused[4] is renewed[4]  # a refused renewal keeps the old lease


def test_cost_above_the_limit_is_never_admitted() -> None:
    """The pure transition refuses a cost above the limit with a full period to wait."""
    plan = Plan("p", 2, 1)
    assert transition(None, LEASE_START, plan, 3, "a")[:4] == (False, 2, 0, 1_000_000)
