"""Application-wide limits stacked on a route's rule, and penalties, through the limiter: one atomic check.

On the in-memory store and on a real redis-server (``sync_storage``), and once on a
real Redis Cluster: a stacked check's keys share one hash slot.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from limify import (
    GlobalLimit,
    InMemoryAdapter,
    Limify,
    LimifyConfig,
    ManualClock,
    RequestContext,
    Rule,
)
from limify.core.algorithms.penalty import Penalty
from limify.core.decision import APPLICATION
from limify.core.redis_clients import sync_client
from limify.core.request_scope import RequestScope, opened

ROUTES = [Rule("items", "GET", "/items", "3/minute"), Rule("orders", "GET", "/orders", "3/minute")]


def stacked(storage: Any, **config: Any) -> Limify:
    """A Limify whose rules share an application limit of 4 per minute (fixed window: exact counts)."""
    config.setdefault("application_limits", "4/minute")
    return Limify("fixed_window", LimifyConfig(ROUTES, **config), storage=storage)


def ask(limify: Limify, path: str, ip: str = "203.0.113.5") -> Any:
    return limify.sync_limiter.decide(RequestContext("GET", path, client_ip=ip))


def test_the_application_limit_applies_on_top_of_each_route(sync_storage: object) -> None:
    """Two routes of 3/minute under an application 4/minute: the fifth request is refused wherever it goes."""
    limify = stacked(sync_storage)
    statuses = [ask(limify, path).status for path in ("/items", "/items", "/orders", "/orders", "/items")]
    assert statuses == [200, 200, 200, 200, 429]
    assert ask(limify, "/items", ip="203.0.113.6").status == 200  # another identity, its own buckets


def test_a_refusal_by_either_consumes_neither(sync_storage: object) -> None:
    """All-or-nothing: refused by the route, the application limit keeps its count, and the other way round."""
    limify = stacked(sync_storage, application_limits="5/minute")
    assert [ask(limify, "/items").status for _ in range(4)] == [200, 200, 200, 429]  # items full
    # Peeking reports what one more request would leave: 5 - 3 counted - 1; the refused fourth did not count.
    assert limify.peek(APPLICATION, ("ip", "203.0.113.5")).remaining == 1
    assert [ask(limify, "/orders").status for _ in range(3)] == [200, 200, 429]  # the application is full
    refused = ask(limify, "/orders")
    assert refused.result.limit == 5 and refused.result.remaining == 0  # the application decided
    # The application's refusal left /orders at two of its three.
    limify.reset(APPLICATION, ("ip", "203.0.113.5"))
    assert [ask(limify, "/orders").status for _ in range(2)] == [200, 429]


def test_stacked_keys_share_the_identity_tag(sync_storage: object) -> None:
    """Route and application keys of one identity carry the identity as hash tag: one Cluster slot."""
    decision = ask(stacked(sync_storage), "/items")
    assert decision.keys == (
        "limify:{ip:203.0.113.5}:items:default.60s",
        "limify:{ip:203.0.113.5}:*app:default.60s",
    )
    assert decision.scopes == ("items", APPLICATION)
    assert len({key_slot(key.encode()) for key in decision.keys}) == 1


def test_a_global_application_limit_takes_the_shared_tag(sync_storage: object) -> None:
    """A GlobalLimit among the application limits: every key of the check is tagged {*}."""
    limify = stacked(sync_storage, application_limits=[GlobalLimit("5/minute")])
    decision = ask(limify, "/items")
    assert decision.keys == ("limify:{*}:items:default.60s:ip:203.0.113.5", "limify:{*}:*app:default.60s")
    assert [ask(limify, "/orders", ip=f"198.51.100.{n}").status for n in range(5)] == [200] * 4 + [429]


def test_requests_no_rule_matches_meet_the_application_limit_alone(sync_storage: object) -> None:
    """Without a matching rule or a default rule, the application limit still counts the request."""
    limify = stacked(sync_storage, application_limits="2/minute")
    assert [ask(limify, "/elsewhere").status for _ in range(3)] == [200, 200, 429]
    assert ask(limify, "/items").status == 429


def test_the_application_limit_is_counted_once_per_request() -> None:
    """A route's own rule decided after the config's (a dependency) does not count the application twice."""
    limify = stacked(InMemoryAdapter(), application_limits="3/minute")
    own = Rule("export", "GET", "/items", "10/minute")
    for _ in range(3):
        with opened(RequestScope()) as scope:
            context = RequestContext("GET", "/items", client_ip="192.0.2.1")
            assert limify.sync_limiter.decide(context).status == 200
            assert limify.sync_limiter.decide(context, own).status == 200
            assert [d.scopes for d in scope.decisions] == [("items", APPLICATION), ("export",)]
    assert limify.peek(APPLICATION, ("ip", "192.0.2.1")).remaining == 0
    # Without a request scope (no middleware ran), a rule of its own stacks the application limit.
    assert limify.sync_limiter.decide(RequestContext("GET", "/items", client_ip="192.0.2.2"), own).scopes == (
        "export",
        APPLICATION,
    )


def test_a_cost_above_the_application_limit_is_refused_when_configured() -> None:
    """A rule whose fixed cost could never pass the application limit is a ValueError naming it."""
    with pytest.raises(ValueError, match="rule 'bulk': cost 5 is above the application limit of 4"):
        LimifyConfig([Rule("bulk", path="/bulk", rate="10/minute", cost=5)], application_limits="4/minute")
    with pytest.raises(ValueError, match="application_limits: invalid rate '4 a minute'"):
        LimifyConfig(application_limits="4 a minute")


def test_stacked_checks_run_on_a_redis_cluster(cluster_url: str) -> None:
    """On a real 3-master cluster: route, application and penalty keys in one script, no CROSSSLOT."""
    limify = stacked(cluster_url, penalty=Penalty("2/minute", "1 hour"))
    ips = [f"198.51.100.{n}" for n in range(6)]
    for ip in ips:
        assert [ask(limify, "/items", ip).status for _ in range(4)] == [200, 200, 200, 429]
        assert ask(limify, "/orders", ip).status == 200
        assert ask(limify, "/orders", ip).status == 429  # the second refusal: blocked from now on
        blocked = ask(limify, "/orders", ip)
        assert blocked.status == 429 and blocked.result.retry_after > 3000
    client = sync_client(cluster_url)
    try:
        assert client.exists("limify:{ip:198.51.100.0}:*app:*penalty.60s") == 1
    finally:
        client.close()


# --- penalties -----------------------------------------------------------------------------------


def test_a_rule_penalty_blocks_the_identity_after_repeated_refusals(
    sync_storage: object, clock: ManualClock
) -> None:
    """Two refusals within a minute start a 10-minute block: its wait is reported, the limit the route's."""
    rule = Rule("login", "POST", "/login", "1/minute", penalty={"after": "2/minute", "block": "10 minutes"})
    limify = Limify("fixed_window", LimifyConfig([rule]), storage=sync_storage)
    context = RequestContext("POST", "/login", user_id="mallory")
    clock.set(1_800_000_000)
    answers = []
    for _ in range(4):
        decision = limify.sync_limiter.decide(context)
        answers.append((decision.status, decision.result.limit, round(decision.result.retry_after)))
        clock.advance(1)
    assert answers == [(200, 1, 0), (429, 1, 59), (429, 1, 58), (429, 1, 599)]
    clock.advance(60)  # the window reopened, the block has not ended
    assert limify.sync_limiter.decide(context).status == 429
    limify.reset("login", ("user", "mallory"))  # a reset lifts the block too
    assert limify.sync_limiter.decide(context).status == 200


def test_a_config_penalty_blocks_the_identity_on_every_route(sync_storage: object) -> None:
    """The config's penalty counts refusals of every route and blocks them all (one key per identity)."""
    limify = stacked(sync_storage, application_limits=None, penalty=Penalty("3/minute", 600))
    assert [ask(limify, "/items").status for _ in range(6)] == [200, 200, 200, 429, 429, 429]
    blocked = ask(limify, "/orders")
    assert blocked.status == 429 and blocked.result.retry_after == pytest.approx(600)
    assert ask(limify, "/orders", ip="203.0.113.77").status == 200


@given(st.lists(st.tuples(st.sampled_from(["/items", "/orders", "/other"]), st.integers(0, 40)), max_size=40))
def test_no_window_admits_more_than_any_limit_it_stacks(calls: list[tuple[str, int]]) -> None:
    """Random requests over two routes: per minute, a route admits at most 3 and all together at most 4."""
    clock = ManualClock(1_800_000_000)
    limify = stacked(InMemoryAdapter(clock=clock))
    admitted: list[tuple[int, str]] = []
    for path, gap in calls:
        clock.advance(gap)
        if ask(limify, path).status == 200:
            admitted.append((clock.now_us() // 60_000_000, path))
    for window in {w for w, _ in admitted}:
        inside = [path for w, path in admitted if w == window]
        assert len(inside) <= 4
        assert all(inside.count(path) <= 3 for path in ("/items", "/orders"))
