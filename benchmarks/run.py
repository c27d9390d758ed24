"""One benchmark run: every section, in order, on one Redis; returns the JSON document."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis
import redis.asyncio

from benchmarks import floors, limify_contenders, memory, peers, stores
from benchmarks.http_load import (
    FULL_HTTP,
    QUICK_HTTP,
    HttpSettings,
    http_peers,
    http_section,
    measure_http,
    server_info,
)
from benchmarks.report import latency_section, machine, throughput_section
from benchmarks.throughput import measure_throughput
from benchmarks.timing import ALLOWED_LIMIT, PERIOD_SECONDS, Batching, measure_async, measure_sync

__all__ = ["Settings", "QUICK", "FULL", "run"]


@dataclass(frozen=True)
class Settings:
    """Sizes of one run (see ``benchmarks.timing`` for batches and repeats)."""

    mode: str
    memory: Batching
    redis: Batching
    tasks: int
    checks_per_task: int
    throughput_warmup: int
    throughput_repeats: int
    memory_keys: int
    redis_keys: int
    http: HttpSettings


QUICK = Settings(
    "quick",
    memory=Batching(target_ns=200_000, min_calls=20, max_calls=1_000, warmup=1, repeats=3),
    redis=Batching(target_ns=2_000_000, min_calls=3, max_calls=50, warmup=1, repeats=3),
    tasks=100,
    checks_per_task=2,
    throughput_warmup=0,
    throughput_repeats=1,
    memory_keys=2_000,
    redis_keys=200,
    http=QUICK_HTTP,
)
FULL = Settings(
    "full",
    memory=Batching(target_ns=1_000_000, min_calls=20, max_calls=5_000, warmup=2, repeats=61),
    redis=Batching(target_ns=5_000_000, min_calls=5, max_calls=200, warmup=2, repeats=31),
    tasks=100,
    checks_per_task=5,
    throughput_warmup=1,
    throughput_repeats=11,
    memory_keys=20_000,
    redis_keys=2_000,
    http=FULL_HTTP,
)


def _peer_notes(found: dict[str, str | None], use_peers: bool) -> tuple[set[str], list[str]]:
    if not use_peers:
        return set(), ["skipped (--no-peers): Limify and the floors only"]
    available = {dist for dist, version in found.items() if version}
    notes = [f"{dist} {version}" for dist, version in found.items() if version]
    missing = sorted(dist for dist, version in found.items() if not version)
    if missing:
        notes.append(
            f"not installed: {', '.join(missing)}; measuring Limify and the floors without them "
            "(install the 'bench' extra: pip install '.[bench]')"
        )
    return available, notes


def _memory_sections(tag: str, settings: Settings, available: set[str]) -> dict[str, Any]:
    sync_contenders = floors.memory_sync_floors() + limify_contenders.memory_sync(tag)
    sync_contenders += peers.memory_sync(available)
    sync = measure_sync(sync_contenders, tag, settings.memory)

    async def run_async() -> Any:
        contenders = floors.memory_async_floors() + limify_contenders.memory_async(tag)
        contenders += peers.memory_async(available)
        return await measure_async(contenders, tag, settings.memory)

    async_measured = asyncio.run(run_async())
    return {
        "memory_sync": latency_section(sync, floors.MEMORY_SYNC_FLOOR, settings.memory),
        "memory_async": latency_section(async_measured, floors.MEMORY_ASYNC_FLOOR, settings.memory),
    }


def _redis_sync_section(url: str, tag: str, settings: Settings, available: set[str]) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    closers: list[Callable[[], Any]] = [client.close]
    try:
        contenders = floors.redis_sync_floors(client) + limify_contenders.redis_sync(tag, url, client)
        contenders += peers.redis_sync(available, url, client, closers)
        measured = measure_sync(contenders, tag, settings.redis)
    finally:
        for close in closers:
            close()
    return latency_section(measured, floors.REDIS_SYNC_FLOOR, settings.redis)


async def _redis_async_sections(
    url: str, tag: str, settings: Settings, available: set[str]
) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(url)
    closers: list[Callable[[], Awaitable[Any]]] = [client.aclose]
    try:
        sha = await client.script_load(floors.FLOOR_SCRIPT)
        contenders = floors.redis_async_floors(client, sha) + limify_contenders.redis_async(tag, url, client)
        contenders += peers.redis_async(available, url, client, closers)
        measured = await measure_async(contenders, tag, settings.redis)
        deciding = [c for c in contenders if c.decides]
        rates = await measure_throughput(
            deciding,
            tag,
            settings.tasks,
            settings.checks_per_task,
            settings.throughput_warmup,
            settings.throughput_repeats,
        )
    finally:
        for close in closers:
            await close()
    return {
        "redis_async": latency_section(measured, floors.REDIS_ASYNC_FLOOR, settings.redis),
        "throughput": throughput_section(
            rates,
            floors.REDIS_ASYNC_FLOOR,
            settings.tasks,
            settings.checks_per_task,
            settings.throughput_repeats,
        ),
    }


def run(
    url: str,
    tag: str,
    settings: Settings,
    *,
    use_peers: bool = True,
    progress: Any = None,
    postgres_url: str | None = None,
    memcached_url: str | None = None,
) -> dict[str, Any]:
    """Measure everything against the Redis at ``url``; keys carry ``tag`` (the caller deletes them)."""

    def step(message: str) -> None:
        if progress is not None:
            progress(message)

    available, notes = _peer_notes(peers.installed_peers(), use_peers)
    probe: Any = redis.Redis.from_url(url)
    try:
        redis_info = probe.info()
    finally:
        probe.close()
    document: dict[str, Any] = {
        "benchmark": "limify",
        "format": 1,
        "mode": settings.mode,
        "settings": asdict(settings),
        "plan": {"allowed_limit": ALLOWED_LIMIT, "rejected_limit": 1, "period_seconds": PERIOD_SECONDS},
        "key_tag": tag,
        "machine": machine(redis_info),
        "peers": {"used": sorted(available), "notes": notes},
    }
    step("in memory, sync and async")
    latency = _memory_sections(tag, settings, available)
    step("Redis, sync")
    latency["redis_sync"] = _redis_sync_section(url, tag, settings, available)
    step("Redis, async and throughput")
    async_sections = asyncio.run(_redis_async_sections(url, tag, settings, available))
    latency["redis_async"] = async_sections["redis_async"]
    if postgres_url is not None:
        step("PostgreSQL, sync and async")
        latency.update(stores.postgres_sections(postgres_url, tag, settings.redis))
    if memcached_url is not None:
        step("Memcached, sync and async")
        latency.update(stores.memcached_sections(memcached_url, tag, settings.redis))
    document["latency"] = latency
    document["throughput"] = async_sections["throughput"]
    step("memory per key")
    client = redis.Redis.from_url(url)
    try:
        document["memory_per_key"] = {
            "in_process": memory.in_process(tag, settings.memory_keys),
            "redis": memory.in_redis(client, tag, settings.redis_keys),
            "keys_in_process": settings.memory_keys,
            "keys_in_redis": settings.redis_keys,
        }
    finally:
        client.close()
    step("HTTP load (wrk against uvicorn)")
    found = http_peers() if use_peers else {}
    rows = measure_http(url, tag, settings.http, {name for name, version in found.items() if version}, step)
    document["http"] = http_section(rows, settings.http, server_info(found))
    return document
