"""@rate_limit on every kind of callable: sync/async detection, metadata, keys, errors."""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any

import pytest
import redis

import limify
from limify import InMemoryAdapter, ManualClock, Plan, RateLimitExceeded, rate_limit
from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter
from limify.core.storage import adapter_for


def exhausts_after(call: Any, n: int) -> bool:
    """True when `call` succeeds n times and is then refused."""
    for _ in range(n):
        call()
    try:
        call()
    except RateLimitExceeded:
        return True
    return False


def test_plain_function_keeps_its_metadata(memory: InMemoryAdapter) -> None:
    """name, doc, __wrapped__ and the signature survive; it is not a coroutine function."""

    def greet(who: str, punctuation: str = "!") -> str:
        """Say hello."""
        return f"hello {who}{punctuation}"

    limited = rate_limit("2/minute", storage=memory)(greet)
    assert limited.__name__ == "greet" and limited.__doc__ == "Say hello."
    assert limited.__wrapped__ is greet
    assert inspect.signature(limited) == inspect.signature(greet)
    assert not inspect.iscoroutinefunction(limited)
    assert limited("you") == "hello you!"
    assert exhausts_after(lambda: limited("you"), 1)


@pytest.mark.anyio
async def test_async_function_is_detected_and_stays_a_coroutine_function(memory: InMemoryAdapter) -> None:
    """An async def stays an async def to inspect, and is limited when awaited."""

    @rate_limit("2/minute", storage=memory)
    async def fetch(x: int) -> int:
        """Fetch x."""
        return x

    assert inspect.iscoroutinefunction(fetch) and fetch.__doc__ == "Fetch x."
    assert str(inspect.signature(fetch)) == "(x: 'int') -> 'int'"
    assert [await fetch(1), await fetch(2)] == [1, 2]
    with pytest.raises(RateLimitExceeded):
        await fetch(3)


def test_methods_classmethods_staticmethods(memory: InMemoryAdapter) -> None:
    """Instance methods, classmethods (either decorator order) and staticmethods are limited."""

    class Service:
        def __init__(self, name: str) -> None:
            self.name = name

        @rate_limit("1/minute", storage=memory, key=lambda self, item: (self.name, item))
        def get(self, item: str) -> str:
            return f"{self.name}:{item}"

        @rate_limit("1/minute", storage=memory, key="item")
        @classmethod
        def build(cls, item: str) -> str:
            return f"{cls.__name__}:{item}"

        @classmethod
        @rate_limit("1/minute", storage=memory, key="item")
        def build2(cls, item: str) -> str:
            return item

        @rate_limit("1/minute", storage=memory, key="item")
        @staticmethod
        def plain(item: str) -> str:
            return item

    a, b = Service("a"), Service("b")
    assert a.get("x") == "a:x" and b.get("x") == "b:x"  # key includes self.name
    with pytest.raises(RateLimitExceeded):
        a.get(item="x")
    assert Service.build("x") == "Service:x"
    with pytest.raises(RateLimitExceeded):
        a.build(item="x")  # via the instance: same key, same bucket
    assert Service.build2("y") == "y"
    with pytest.raises(RateLimitExceeded):
        Service.build2("y")
    assert Service.plain("z") == "z"
    with pytest.raises(RateLimitExceeded):
        a.plain("z")


@pytest.mark.anyio
async def test_async_methods_and_classmethods(memory: InMemoryAdapter) -> None:
    """Async methods and classmethods are awaited and limited; inspect sees coroutines."""

    class Client:
        @rate_limit("1/minute", storage=memory, key="page")
        async def fetch(self, page: int) -> int:
            return page

        @rate_limit("1/minute", storage=memory)
        @classmethod
        async def ping(cls) -> str:
            return "pong"

    client = Client()
    assert inspect.iscoroutinefunction(Client.fetch) and inspect.iscoroutinefunction(client.ping)
    assert await client.fetch(1) == 1 and await client.fetch(2) == 2
    with pytest.raises(RateLimitExceeded):
        await client.fetch(page=1)
    assert await Client.ping() == "pong"
    with pytest.raises(RateLimitExceeded):
        await client.ping()


@pytest.mark.anyio
async def test_partials_and_callable_objects(memory: InMemoryAdapter) -> None:
    """functools.partial and objects with a sync or async __call__ are detected correctly."""

    async def add(a: int, b: int) -> int:
        return a + b

    class AsyncCallable:
        """Adds one."""

        async def __call__(self, x: int) -> int:
            return x + 1

    class SyncCallable:
        def __call__(self, x: int) -> int:
            return x * 2

    add_one = rate_limit("1/minute", storage=memory, name="p")(functools.partial(add, 1))
    inc = rate_limit("1/minute", storage=memory, key="x", name="a")(AsyncCallable())
    double = rate_limit("1/minute", storage=memory, name="s")(SyncCallable())
    assert inspect.iscoroutinefunction(add_one) and inspect.iscoroutinefunction(inc)
    assert not inspect.iscoroutinefunction(double)
    assert inc.__doc__ == "Adds one." and str(inspect.signature(inc)) == "(x: 'int') -> 'int'"
    assert await add_one(2) == 3 and await inc(1) == 2 and double(4) == 8
    with pytest.raises(RateLimitExceeded):
        await add_one(2)
    with pytest.raises(RateLimitExceeded):
        await inc(x=1)
    with pytest.raises(RateLimitExceeded):
        double(4)


def test_generators_are_refused_at_decoration() -> None:
    """Generator and async-generator functions get a TypeError that says why."""

    def numbers() -> Any:
        yield 1

    async def stream() -> Any:
        yield 1

    for fn in (numbers, stream):
        with pytest.raises(TypeError, match="generator"):
            rate_limit("1/s")(fn)


def test_parameter_key_binds_positional_keyword_and_default(memory: InMemoryAdapter) -> None:
    """key='user_id' gives one bucket per user however the argument is passed."""

    @rate_limit("2/minute", storage=memory, key="user_id")
    def view(request: str, user_id: str = "anonymous") -> str:
        return user_id

    view("r", "42")
    view("r", user_id="42")
    with pytest.raises(RateLimitExceeded) as info:
        view(request="r", user_id="42")
    assert info.value.key.endswith(":42")
    assert view("r", "7") == "7"  # another user, another bucket
    view("r")
    view("r", "anonymous")  # the default is the same key as passing it
    with pytest.raises(RateLimitExceeded):
        view("r")


def test_key_callable_receives_the_call_arguments(memory: InMemoryAdapter) -> None:
    """A key callable gets the same arguments as the function."""
    seen = []

    def by_tenant(tenant: str, *, size: int) -> str:
        seen.append((tenant, size))
        return tenant

    @rate_limit("1/minute", storage=memory, key=by_tenant)
    def upload(tenant: str, *, size: int) -> int:
        return size

    assert upload("acme", size=3) == 3 and upload("other", size=4) == 4
    with pytest.raises(RateLimitExceeded):
        upload("acme", size=5)
    assert seen == [("acme", 3), ("other", 4), ("acme", 5)]


def test_hostile_key_values_do_not_share_buckets(memory: InMemoryAdapter) -> None:
    """Key values with separators, braces, wildcards or spaces never collide."""

    @rate_limit("1/minute", storage=memory, key="who")
    def act(who: object) -> None:
        return None

    values = ["a:b", "a", "a%3Ab", "{a}", "*", "a b", "a\nb", "", "x" * 10_000, b"\xff", "42"]
    for value in values:
        act(value)  # each one first call: admitted
    with pytest.raises(RateLimitExceeded):
        act(42)  # int 42 and "42" are the same caller


def test_refusal_carries_result_retry_after_and_key(memory: InMemoryAdapter) -> None:
    """RateLimitExceeded exposes .result, .retry_after (> 0) and .key."""

    @rate_limit("3/minute", storage=memory, name="orders")
    def order() -> None:
        return None

    for _ in range(3):
        order()
    with pytest.raises(RateLimitExceeded) as info:
        order()
    error = info.value
    assert error.retry_after == pytest.approx(20.0) and error.retry_after > 0
    assert error.result.allowed is False and error.result.limit == 3
    assert error.key == "limify:orders:default"
    assert "orders" in str(error)


def test_wait_sleeps_exactly_until_admitted(
    memory: InMemoryAdapter, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """on_exceeded='wait' sleeps retry_after (time.sleep) and then runs the call."""
    naps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        naps.append(seconds)
        clock.advance(seconds)

    monkeypatch.setattr(time, "sleep", fake_sleep)

    @rate_limit("2/minute", storage=memory, on_exceeded="wait", max_wait=60)
    def call() -> str:
        return "done"

    assert [call(), call(), call()] == ["done"] * 3
    assert naps == [pytest.approx(30.0)]


def test_wait_beyond_max_wait_raises_at_once(
    memory: InMemoryAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the needed wait exceeds max_wait the call raises without sleeping."""
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("must not sleep"))

    @rate_limit("1/minute", storage=memory, on_exceeded="wait", max_wait=5)
    def call() -> None:
        return None

    call()
    with pytest.raises(RateLimitExceeded) as info:
        call()
    assert info.value.retry_after == pytest.approx(60.0)


@pytest.mark.anyio
async def test_async_wait_uses_anyio_sleep(anyio_backend: str) -> None:
    """An async limit with on_exceeded='wait' really waits (briefly) on asyncio and trio."""

    @rate_limit("20/second", storage=InMemoryAdapter(), on_exceeded="wait", max_wait=1)
    async def tick() -> float:
        return time.monotonic()

    stamps = [await tick() for _ in range(22)]
    assert stamps[-1] - stamps[0] >= 0.08  # two tokens at 50 ms each, less scheduling slack


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"rate": "10 per fortnight"}, ValueError, "'10 per fortnight'"),
        ({"rate": "minute/10"}, ValueError, "<limit>/<unit>"),
        ({"rate": None}, ValueError, "needs a rate"),
        ({"rate": "5/s", "on_exceeded": "ignore"}, ValueError, "on_exceeded"),
        ({"rate": "5/s", "max_wait": 3}, ValueError, "max_wait only applies"),
        ({"rate": "5/s", "on_exceeded": "wait", "max_wait": -1}, ValueError, "max_wait"),
        ({"rate": "5/s", "cost": 0}, ValueError, "cost"),
        ({"rate": "5/s", "cost": 6}, ValueError, "never be admitted"),
        ({"rate": "5/s", "cost": 1.5}, TypeError, "cost"),
        ({"rate": "5/s", "algorithm": "magic"}, ValueError, "'token_bucket'"),
        ({"rate": "5/s", "storage": "mongodb://x"}, ValueError, "unsupported storage URL"),
        ({"rate": "5/s", "storage": "redis+cluster://h:\u0667\u0660\u0660\u0660"}, ValueError, "host:port"),
        ({"rate": "5/s", "storage": 42}, TypeError, "storage must be"),
        ({"rate": "5/s", "key": 3}, TypeError, "key must be"),
        ({"rate": "5/s", "name": ""}, TypeError, "name"),
    ],
)
def test_bad_arguments_fail_at_decoration_time(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    """Every bad argument raises before any function is even decorated."""
    with pytest.raises(error, match=words.replace("(", r"\(")):
        rate_limit(**kwargs)


def test_key_naming_no_parameter_fails_at_decoration() -> None:
    """key='x' for a function without x lists the parameters it has."""

    def view(request: str, user_id: int) -> None:
        return None

    with pytest.raises(ValueError, match="request, user_id"):
        rate_limit("1/s", key="uid")(view)


def test_bare_decorator_is_explained() -> None:
    """@rate_limit without arguments says how to write it."""
    with pytest.raises(TypeError, match=r"@rate_limit\('10/minute'\)"):

        @rate_limit  # type: ignore[arg-type]
        def view() -> None:
            return None


def test_sync_and_async_adapters_must_match_the_callable(redis_url: str) -> None:
    """A sync-only adapter on an async function (or the reverse) is a TypeError at decoration."""
    sync_adapter = RedisSyncAdapter(redis.Redis.from_url(redis_url))
    async_adapter = RedisAsyncAdapter.from_url(redis_url)

    async def coro() -> None:
        return None

    def func() -> None:
        return None

    with pytest.raises(TypeError, match="only serves sync"):
        rate_limit("1/s", storage=sync_adapter)(coro)
    with pytest.raises(TypeError, match="only serves async"):
        rate_limit("1/s", storage=async_adapter)(func)
    sync_adapter.client.close()


def test_configure_sets_the_default_picked_up_by_existing_limits(clock: ManualClock) -> None:
    """configure(storage=...) applies to limits declared earlier, from their next call."""
    previous = limify.get_default_storage()

    @rate_limit("1/minute")
    def view() -> None:
        return None

    first, second = InMemoryAdapter(clock=clock), InMemoryAdapter(clock=clock)
    try:
        limify.configure(storage=first)
        view()
        with pytest.raises(RateLimitExceeded):
            view()
        limify.configure(storage=second)
        view()  # a fresh store: a fresh bucket
        assert len(first) == 1 and len(second) == 1
    finally:
        limify.configure(storage=previous)
    with pytest.raises(TypeError):
        limify.configure(storage=3.5)  # type: ignore[arg-type]


def test_plan_objects_are_accepted_and_name_the_key(memory: InMemoryAdapter) -> None:
    """A Plan may be given instead of a rate string; its id is part of the key."""

    @rate_limit(Plan("pro", 1, 60), storage=memory, name="api")
    def call() -> None:
        return None

    call()
    with pytest.raises(RateLimitExceeded) as info:
        call()
    assert info.value.key == "limify:api:pro"


def test_same_url_shares_one_adapter() -> None:
    """Limits naming the same URL share one adapter (and one connection pool)."""
    assert adapter_for("memory://", is_async=False) is adapter_for("memory://", is_async=True)
