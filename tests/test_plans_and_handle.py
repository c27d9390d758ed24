"""Plans, providers, cost, the peek/reset handle and refund_on, in memory and on Redis."""

from __future__ import annotations

from typing import Any

import pytest

import limify
from limify import InMemoryAdapter, ManualClock, Plan, PlanRegistry, RateLimitExceeded, rate_limit
from limify.core.function_limit import CallContext
from limify.core.redis_adapter import RedisAsyncAdapter


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> PlanRegistry:
    """A fresh process-default registry for the test."""
    fresh = PlanRegistry()
    monkeypatch.setattr(limify.core.plans, "plans", fresh)
    monkeypatch.setattr(limify.decorator, "plans", fresh)
    return fresh


def test_registry_registers_plans_both_ways(registry: PlanRegistry) -> None:
    """register(Plan) and register(name, rate) give the same plan; get() finds it."""
    assert registry.register(Plan("pro", 100, 60)) == registry.register("pro", "100/minute")
    assert registry.get("pro").limit == 100 and registry.names() == ["pro"]
    with pytest.raises(ValueError, match="registered plans are 'pro'"):
        registry.get("gold")
    with pytest.raises(TypeError):
        registry.register("pro")  # type: ignore[call-arg]


def test_named_plan_on_the_decorator(registry: PlanRegistry, sync_storage: object) -> None:
    """@rate_limit(plan='free') uses the registered plan, whose id is part of the key."""
    registry.register("free", "2/hour")

    @rate_limit(plan="free", storage=sync_storage, name="api", key="user")
    def call(user: str) -> None:
        return None

    call("u")
    call("u")
    with pytest.raises(RateLimitExceeded) as info:
        call("u")
    assert info.value.key == "limify:api:free:u" and info.value.result.limit == 2


def test_unknown_names_fail_at_decoration_listing_known_ones(registry: PlanRegistry) -> None:
    """An unknown plan or provider name is a ValueError naming what exists."""
    registry.register("free", "2/hour")
    registry.register_provider("billing", lambda context: None)
    with pytest.raises(ValueError, match="registered plans are 'free'"):
        rate_limit(plan="gold")
    with pytest.raises(ValueError, match="registered providers are 'billing'"):
        rate_limit("1/s", plan_provider="crm")
    with pytest.raises(ValueError, match="not both"):
        rate_limit("1/s", plan="free")


def test_provider_picks_the_plan_per_call_and_upgrades_start_fresh(
    registry: PlanRegistry, sync_storage: object
) -> None:
    """A provider's plan applies per call; None falls back to the inline rate; plan ids key the buckets."""
    registry.register("pro", "3/hour")
    tiers = {"alice": "pro", "bob": None}
    seen: list[CallContext] = []

    def billing(context: CallContext) -> str | None:
        seen.append(context)
        return tiers[context.identity]

    registry.register_provider("billing", billing)

    @rate_limit("1/hour", plan_provider="billing", key="user_id", storage=sync_storage, name="api")
    def call(user_id: str, size: int = 0) -> None:
        return None

    for _ in range(3):
        call("alice", size=1)
    with pytest.raises(RateLimitExceeded) as refused:
        call("alice")
    assert refused.value.key == "limify:api:pro:alice"
    call("bob")
    with pytest.raises(RateLimitExceeded) as fallback:
        call("bob")
    assert fallback.value.key == "limify:api:default:bob"
    tiers["bob"] = "pro"  # an upgrade: a fresh bucket under the new plan
    call("bob")
    assert (
        seen[0].function.__name__ == "call" and seen[0].args == ("alice",) and seen[0].kwargs == {"size": 1}
    )


def test_provider_objects_with_resolve(sync_storage: object) -> None:
    """An object with resolve(context, rule) is a provider too (rule is None for functions)."""

    class Tiers:
        def resolve(self, context: Any, rule: Any) -> Plan | None:
            assert rule is None
            return Plan("gold", 5, 60) if context.identity == "vip" else None

    @rate_limit("1/minute", plan_provider=Tiers(), key="user", storage=sync_storage, name="p")
    def call(user: str) -> None:
        return None

    for _ in range(5):
        call("vip")
    call("other")
    with pytest.raises(RateLimitExceeded):
        call("other")


def test_cost_callable_and_bounds(sync_storage: object) -> None:
    """cost= may be computed from the arguments; a cost above the limit is a ValueError."""

    @rate_limit("10/hour", storage=sync_storage, name="bytes", cost=lambda size: size)
    def upload(size: int) -> int:
        return size

    upload(6)
    with pytest.raises(RateLimitExceeded):
        upload(5)
    upload(4)
    with pytest.raises(ValueError, match="between 1 and the limit"):
        upload(11)
    with pytest.raises(ValueError, match="never be admitted"):
        rate_limit("10/hour", cost=11)


def test_peek_consumes_nothing_and_reset_clears(sync_storage: object) -> None:
    """fn.rate_limit.peek(...) shows the next decision without spending; reset(...) starts over."""

    @rate_limit("2/hour", storage=sync_storage, name="h", key="user")
    def call(user: str) -> None:
        return None

    assert call.rate_limit.peek("u").remaining == 1
    assert call.rate_limit.peek("u").remaining == 1  # peeking spent nothing
    call("u")
    call("u")
    peeked = call.rate_limit.peek(user="u")
    assert not peeked.allowed and peeked.retry_after == pytest.approx(1800)
    call.rate_limit.reset("u")
    call("u")
    assert call.rate_limit.plans == (Plan("default", 2, 3600),)


def test_handle_on_methods_sees_self(sync_storage: object) -> None:
    """The handle of a method binds the instance, so key callables get self."""

    class Api:
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        @rate_limit("1/hour", storage=sync_storage, name="m", key=lambda self: self.tenant)
        def call(self) -> str:
            return self.tenant

    acme = Api("acme")
    acme.call()
    assert not acme.call.rate_limit.peek().allowed
    assert Api("other").call.rate_limit.peek().allowed
    assert acme.call.rate_limit.keys() == ("limify:m:default:acme",)


def test_refund_on_gives_the_cost_back(sync_storage: object) -> None:
    """A call raising a refund_on error spends nothing; other errors still spend."""

    class UpstreamDown(Exception):
        pass

    @rate_limit("2/hour", storage=sync_storage, name="r", refund_on=UpstreamDown)
    def call(fail: type[Exception] | None = None) -> str:
        if fail:
            raise fail("boom")
        return "ok"

    for _ in range(5):
        with pytest.raises(UpstreamDown):
            call(UpstreamDown)
    assert call() == "ok"
    with pytest.raises(KeyError):
        call(KeyError)  # not refunded
    with pytest.raises(RateLimitExceeded):
        call()
    with pytest.raises(TypeError, match="refund_on"):
        rate_limit("1/s", refund_on="oops")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_async_handle_and_refund(anyio_backend: str, clock: ManualClock) -> None:
    """For async callables peek/reset are awaitable and refund_on works the same."""

    @rate_limit("1/hour", storage=InMemoryAdapter(clock=clock), name="a", refund_on=ValueError)
    async def call(fail: bool = False) -> str:
        if fail:
            raise ValueError("no")
        return "ok"

    with pytest.raises(ValueError):
        await call(True)
    assert (await call.rate_limit.peek()).allowed
    assert await call() == "ok"
    assert not (await call.rate_limit.peek()).allowed
    await call.rate_limit.reset()
    assert await call() == "ok"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_compound_on_redis(anyio_backend: str, redis_url: str, clock: ManualClock) -> None:
    """Compound limits and refunds run through redis.asyncio as well."""

    @rate_limit("2/second;3/hour", storage=RedisAsyncAdapter.from_url(redis_url, clock=clock), name="ac")
    async def call() -> None:
        return None

    await call()
    await call()
    with pytest.raises(RateLimitExceeded):
        await call()
    clock.advance(1)
    await call()
    clock.advance(1)
    with pytest.raises(RateLimitExceeded) as info:
        await call()
    assert info.value.result.limit == 3


def test_concurrency_on_the_decorator_releases_when_the_call_ends(sync_storage: object) -> None:
    """algorithm='concurrency': at most `limit` calls inside at once; slots free on return and on error."""
    refused: list[RateLimitExceeded] = []

    @rate_limit("2/minute", algorithm="concurrency", storage=sync_storage, name="conc")
    def work(depth: int = 0, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("boom")
        if depth == 1:  # two slots are held right now (this call and its caller)
            try:
                work()
            except RateLimitExceeded as exc:
                refused.append(exc)
        elif depth:
            work(depth - 1)

    work(2)
    assert len(refused) == 1 and refused[0].result.remaining == 0
    with pytest.raises(RuntimeError):
        work(fail=True)
    work(2)  # every slot came back, on return and on error: the same again
    assert len(refused) == 2
    assert work.rate_limit.peek().remaining == 1


@pytest.mark.anyio
async def test_async_concurrency_on_the_decorator(anyio_backend: str) -> None:
    """Async callables under 'concurrency' hold a slot while awaited and release it after."""
    import anyio

    @rate_limit("3/minute", algorithm="concurrency", storage=InMemoryAdapter(), name="aconc")
    async def work() -> None:
        await anyio.sleep(0.01)

    refused = 0

    async def attempt() -> None:
        nonlocal refused
        try:
            await work()
        except RateLimitExceeded:
            refused += 1

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(attempt)
    assert refused == 2
    assert (await work.rate_limit.peek()).remaining == 2
