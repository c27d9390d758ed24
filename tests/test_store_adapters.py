"""PostgreSQL and Memcached adapters: URLs, user-built clients, the server clock, hostile keys, expiry.

Hostile keys (any text: NUL, lone surrogates, quotes, SQL, whitespace, 10 kB)
must never collide and must reach the server only as data: PostgreSQL gets them
as bound parameters (the table survives keys that are SQL), memcached items are
named by a digest whenever a key is not a plain memcached key.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import psycopg_pool
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limify import ManualClock, Plan, rate_limit
from limify.core.algorithms.base import CONSUME, PEEK
from limify.core.algorithms.fixed_window import FIXED_WINDOW
from limify.core.algorithms.sliding_log import SLIDING_LOG
from limify.core.check import Check
from limify.core.memcached_adapter import MemcachedAsyncAdapter, MemcachedSyncAdapter, item_name
from limify.core.postgres_adapter import PostgresAsyncAdapter, PostgresSyncAdapter
from limify.core.storage import StorageURL

HOSTILE = [
    "", " ", "a b", "\x00", "\ud800", "'; DROP TABLE limify_state; --", "%s", "{}", "#", "#" + "0" * 64,
    "\r\nmg x v\r\n", "é", "x" * 251, "x" * 10_000, "limify:{user:1}:*",
]  # fmt: skip


def adapters(url: str, clock: ManualClock) -> Any:
    """The sync adapter for ``url``."""
    cls: Any = MemcachedSyncAdapter if url.startswith("memcached") else PostgresSyncAdapter
    return cls.from_url(url, clock=clock)


@pytest.fixture(params=["postgres", "memcached"])
def store(request: pytest.FixtureRequest, clock: ManualClock) -> Any:
    """Each sync store on the manual clock."""
    url = request.getfixturevalue("postgres_server_url" if request.param == "postgres" else "memcached_url")
    adapter = adapters(url, clock)
    yield adapter
    adapter.close()


def test_storage_urls_pick_the_adapters(postgres_server_url: str, memcached_url: str) -> None:
    """postgresql://, postgres:// and memcached:// build the sync adapter for sync code, the async one for async."""
    for url, sync_class, async_class in [
        (postgres_server_url, PostgresSyncAdapter, PostgresAsyncAdapter),
        (
            postgres_server_url.replace("postgresql://", "postgres://"),
            PostgresSyncAdapter,
            PostgresAsyncAdapter,
        ),
        (memcached_url, MemcachedSyncAdapter, MemcachedAsyncAdapter),
    ]:
        stores = StorageURL(url)
        assert type(stores.for_sync()) is sync_class and type(stores.for_async()) is async_class


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://h/db?table=x;drop", "plain SQL identifier"),
        ("postgresql://h/db?table=a.b.c", "plain SQL identifier"),
        ("postgresql://h/db?pool_max=0", "pool_max"),
        ("postgresql://h/db?clock=mine", "clock must be"),
        ("postgresql://h/db?create_table=perhaps", "create_table"),
        ("memcached://", "memcached://host:port"),
        ("memcached://h:1?attempts=0", "attempts"),
        ("memcached://h:1?ttl=3", "unknown option"),
    ],
)
def test_bad_urls_fail_where_configured(url: str, message: str) -> None:
    """A malformed URL or option raises ValueError naming it, before anything connects."""
    with pytest.raises(ValueError, match=message):
        StorageURL(url)


def test_a_table_name_must_be_an_identifier() -> None:
    """The table name is the only configured SQL text: anything but an identifier is refused."""
    pool = psycopg_pool.ConnectionPool("postgresql://nowhere", open=False)
    for table in ['x"; DROP TABLE y; --', "1abc", "a b", "a" * 56]:
        with pytest.raises(ValueError, match="identifier"):
            PostgresSyncAdapter(pool, table=table)
    with pytest.raises(TypeError, match="pool"):
        PostgresSyncAdapter("postgresql://nowhere")


def test_a_user_built_pool_and_its_own_table(postgres_server_url: str, clock: ManualClock) -> None:
    """An adapter on the application's own pool keeps its rows in the table it names (created when missing)."""
    table = f"limits_{uuid.uuid4().hex[:8]}"
    with psycopg_pool.ConnectionPool(postgres_server_url, min_size=1, max_size=2) as pool:
        adapter = PostgresSyncAdapter(pool, table=f"public.{table}", clock=clock)
        check = Check(FIXED_WINDOW, ("k",), (Plan("p", 1, 60),), 1)
        assert adapter.execute(check).allowed and not adapter.execute(check).allowed
        with pool.connection() as conn:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)


def test_a_user_built_memcached_adapter(memcached_server: Any, clock: ManualClock) -> None:
    """MemcachedSyncAdapter(host, port) works like the URL's."""
    memcached_server.flush()
    adapter = MemcachedSyncAdapter("127.0.0.1", memcached_server.port, clock=clock)
    check = Check(FIXED_WINDOW, ("k",), (Plan("p", 1, 60),), 1)
    assert adapter.execute(check).allowed and not adapter.execute(check).allowed
    adapter.close()


def test_the_server_clock_decides_by_default(postgres_server_url: str) -> None:
    """Without a clock, PostgreSQL's own time decides (an app server's clock plays no part)."""

    @rate_limit("2/hour", storage=postgres_server_url, key="who", name=f"server-clock-{uuid.uuid4().hex}")
    def call(who: str) -> str:
        return who

    assert [call("a"), call("a")] == ["a", "a"]
    assert not call.rate_limit.peek("a").allowed  # type: ignore[attr-defined]


@settings(max_examples=40)
@given(keys=st.lists(st.text(max_size=40) | st.sampled_from(HOSTILE), min_size=2, max_size=6, unique=True))
def test_hostile_keys_never_collide(store: Any, keys: list[str]) -> None:
    """Distinct keys of any text hold distinct states, on both stores; the table outlives keys that are SQL."""
    prefix, plan = uuid.uuid4().hex, Plan("p", 2, 60)
    named = [prefix + key for key in keys]
    first = named[0]
    for _ in range(2):
        assert store.execute(Check(FIXED_WINDOW, (first,), (plan,), 1, CONSUME)).allowed
    for key in named[1:]:
        assert store.execute(Check(FIXED_WINDOW, (key,), (plan,), 1, PEEK)).remaining == 1
    assert not store.execute(Check(FIXED_WINDOW, (first,), (plan,), 1, PEEK)).allowed
    compound = Check(SLIDING_LOG, tuple(named[:2]), (plan, plan), 1, CONSUME, "t")
    assert store.execute(compound).allowed


def test_hostile_keys_travel_as_data(store: Any) -> None:
    """Every hostile key alone: its own state, nothing in the protocol or SQL text ever breaks."""
    plan = Plan("p", 1, 60)
    prefix = uuid.uuid4().hex
    for key in HOSTILE:
        assert store.execute(Check(FIXED_WINDOW, (prefix + key,), (plan,), 1)).allowed, key
    for key in HOSTILE:
        assert not store.execute(Check(FIXED_WINDOW, (prefix + key,), (plan,), 1)).allowed, key
    names = [item_name((prefix + key,)) for key in HOSTILE]
    assert len(set(names)) == len(names) and all(len(name) <= 250 and b" " not in name for name in names)


def test_expired_rows_read_as_absent_and_are_swept(postgres_server_url: str, clock: ManualClock) -> None:
    """A state past its expiry never decides; sweeps delete expired rows in small batches."""
    table = f"sweep_{uuid.uuid4().hex[:8]}"
    pool = psycopg_pool.ConnectionPool(postgres_server_url, min_size=1, max_size=2, open=True)
    adapter = PostgresSyncAdapter(pool, table=table, clock=clock, sweep_every=1, sweep_batch=5)
    plan = Plan("p", 1, 60)
    for index in range(20):
        adapter.execute(Check(FIXED_WINDOW, (f"old{index}",), (plan,), 1))
    clock.advance(61)
    assert adapter.execute(Check(FIXED_WINDOW, ("old0",), (plan,), 1)).allowed  # expired: a fresh window
    with psycopg.connect(postgres_server_url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 20 - 5  # type: ignore[index]
    for _ in range(3):
        adapter.execute(Check(FIXED_WINDOW, ("new",), (plan,), 1, PEEK))
    with psycopg.connect(postgres_server_url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1 + 0  # type: ignore[index]
    adapter.close()


def test_web_rules_on_memcached_refuse_shared_limits_beside_per_identity_ones(memcached_url: str) -> None:
    """A rule with a GlobalLimit beside its own, or stacked with application limits, is refused on memcached://."""
    from limify import GlobalLimit, Limify, LimifyConfig, RequestContext, Rule

    def ask(config: LimifyConfig, path: str) -> int:
        limiter = Limify("fixed_window", config, storage=memcached_url).sync_limiter
        return int(limiter.decide(RequestContext("GET", path, client_ip="203.0.113.5")).status)

    own = LimifyConfig([Rule("items", "GET", "/items", "1/minute")])
    assert [ask(own, "/items"), ask(own, "/items")] == [200, 429]
    mixed = LimifyConfig([Rule("search", "GET", "/search", ["2/minute", GlobalLimit("5/minute")])])
    with pytest.raises(ValueError, match="GlobalLimit"):
        ask(mixed, "/search")
    stacked = LimifyConfig([Rule("orders", "GET", "/orders", "3/minute")], application_limits="4/minute")
    with pytest.raises(ValueError, match="application-wide"):
        ask(stacked, "/orders")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_callables_on_memcached_refuse_the_same_layout(memcached_url: str) -> None:
    """The refusal holds for async callables too, where they are decorated."""
    from limify import GlobalLimit

    with pytest.raises(ValueError, match="GlobalLimit"):

        @rate_limit(["2/hour", GlobalLimit("3/hour")], storage=memcached_url, key="user")
        async def call(user: str) -> None: ...


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_async_postgres_adapter_says_it_needs_asyncio(postgres_server_url: str) -> None:
    """Under trio, the async PostgreSQL adapter says it needs asyncio instead of failing inside psycopg."""
    adapter = PostgresAsyncAdapter.from_url(postgres_server_url)
    with pytest.raises(RuntimeError, match="needs asyncio"):
        await adapter.execute_async(Check(FIXED_WINDOW, ("k",), (Plan("p", 1, 60),), 1))


@pytest.mark.parametrize("kind", ["postgres", "memcached"])
def test_a_rule_penalty_blocks_and_a_reset_lifts_it(
    kind: str, clock: ManualClock, request: pytest.FixtureRequest
) -> None:
    """A web rule's penalty runs in the same atomic step on both stores; a reset lifts the block."""
    from limify import Limify, LimifyConfig, RequestContext, Rule

    url = request.getfixturevalue("postgres_server_url" if kind == "postgres" else "memcached_url")
    store = adapters(url, clock)
    rule = Rule("login", "POST", "/login", "1/minute", penalty={"after": "2/minute", "block": "10 minutes"})
    limify = Limify("fixed_window", LimifyConfig([rule]), storage=store)
    context = RequestContext("POST", "/login", user_id=f"mallory-{uuid.uuid4().hex}")
    clock.set(1_800_000_000_000_000)  # a minute's first instant
    answers = []
    for _ in range(4):
        decision = limify.sync_limiter.decide(context)
        answers.append((decision.status, round(decision.result.retry_after)))
        clock.advance(1)
    assert answers == [(200, 0), (429, 59), (429, 58), (429, 599)]
    clock.advance(60)
    assert limify.sync_limiter.decide(context).status == 429
    limify.reset("login", ("user", context.user_id))
    assert limify.sync_limiter.decide(context).status == 200
    store.close()


def test_keys_reach_postgresql_only_as_bound_parameters() -> None:
    """With every statement logged (parameters left out), no key ever shows up in any SQL text the server ran."""
    from tests.store_servers import PostgresServer

    server = PostgresServer(
        "log_statement=all", "log_parameter_max_length=0", "log_min_error_statement=panic"
    )
    server.start()
    try:
        adapter = PostgresSyncAdapter.from_url(server.url, clock=ManualClock())
        marker = "zq" + uuid.uuid4().hex
        plan = Plan("p", 1, 60)
        for key in HOSTILE:
            adapter.execute(Check(FIXED_WINDOW, (marker + key,), (plan,), 1))
            adapter.execute(
                Check(SLIDING_LOG, (marker + key, marker + "other"), (plan, plan), 1, CONSUME, marker)
            )
            adapter.hold(marker + key, 5)
        adapter.clear([marker + key for key in HOSTILE])
        adapter.close()
        log = server.log()
        assert "statement: " in log or "execute " in log  # statements were logged
        assert marker not in log
    finally:
        server.stop()
