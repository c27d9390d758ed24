"""The PostgreSQL and Memcached sections: Limify's adapters against a bare single-statement floor each.

Run when ``python -m benchmarks`` is given ``--postgres-url`` / ``--memcached-url``
(the servers are the caller's; this run's rows and items are keyed by its tag).

* PostgreSQL floor: one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` round trip
  per check, a counter per key in a table of its own (autocommit): what a check
  costs if it were a single statement, with no lock order, no state, no clock.
* Memcached floor: one ``mg`` (value + CAS) and, when admitted, one ``ms ... C<cas>``
  of a counter: the least a compare-and-set check can send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import limify_contenders
from benchmarks.report import latency_section
from benchmarks.timing import Contender, measure_async, measure_sync

__all__ = ["postgres_sections", "memcached_sections", "POSTGRES_FLOOR", "MEMCACHED_FLOOR", "TITLES"]

POSTGRES_FLOOR = "INSERT ... ON CONFLICT counter (psycopg)"
MEMCACHED_FLOOR = "mg + ms C<cas> counter"
#: Section key -> its title in the report.
TITLES = {
    "postgres_sync": "PostgreSQL, sync",
    "postgres_async": "PostgreSQL, async (asyncio)",
    "memcached_sync": "Memcached, sync",
    "memcached_async": "Memcached, async (asyncio)",
}
_FLOOR_TABLE = "limify_bench_floor"
_UPSERT = (
    f"INSERT INTO {_FLOOR_TABLE} (key, n) VALUES (%s, 1) "
    f"ON CONFLICT (key) DO UPDATE SET n = {_FLOOR_TABLE}.n + 1 RETURNING n"
)


def _postgres_floor_sync(conn: Any) -> Contender:
    def build(limit: int) -> Callable[[str], bool]:
        def check(key: str) -> bool:
            return bool(conn.execute(_UPSERT, (key,)).fetchone()[0] <= limit)

        return check

    return Contender(POSTGRES_FLOOR, "floor", build)


def _postgres_floor_async(conn: Any) -> Contender:
    def build(limit: int) -> Callable[[str], Awaitable[bool]]:
        async def check(key: str) -> bool:
            cursor = await conn.execute(_UPSERT, (key,))
            return bool((await cursor.fetchone())[0] <= limit)

        return check

    return Contender(POSTGRES_FLOOR, "floor", build)


def postgres_sections(url: str, tag: str, batching: Any) -> dict[str, Any]:
    """The sync and async PostgreSQL latency sections."""
    import asyncio

    import psycopg

    from limify.core.postgres_adapter import PostgresAsyncAdapter, PostgresSyncAdapter

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_FLOOR_TABLE} (key text PRIMARY KEY, n bigint NOT NULL)")
        adapter = PostgresSyncAdapter.from_url(url)
        try:
            contenders = [_postgres_floor_sync(conn), *limify_contenders.store_sync(tag + "ps", url, adapter)]
            sync = latency_section(measure_sync(contenders, tag, batching), POSTGRES_FLOOR, batching)
        finally:
            adapter.close()

    async def run_async() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            adapter = PostgresAsyncAdapter.from_url(url)
            contenders = [
                _postgres_floor_async(conn),
                *limify_contenders.store_async(tag + "pa", url, adapter),
            ]
            measured = await measure_async(contenders, tag, batching)
            await adapter.close()
        return latency_section(measured, POSTGRES_FLOOR, batching)

    section = asyncio.run(run_async())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {_FLOOR_TABLE}")
        conn.execute("DELETE FROM limify_state WHERE position(%s in convert_from(key, 'UTF8')) > 0", (tag,))
    return {"postgres_sync": sync, "postgres_async": section}


def _cas_counter(limit: int, item: bytes, reply: Any, value: bytes) -> bytes | None:
    """The ``ms`` of a counter below ``limit`` (``None``: refused, nothing to send)."""
    from limify.core.memcached_protocol import set_command

    count = int(value) if reply.code == b"VA" and value.isdigit() else 0
    if count >= limit:
        return None
    return set_command(item, b"%d" % (count + 1), 3600, reply.cas if reply.code == b"VA" else None)


def memcached_sections(url: str, tag: str, batching: Any) -> dict[str, Any]:
    """The sync and async Memcached latency sections."""
    import asyncio

    from limify.core.memcached_adapter import MemcachedAsyncAdapter, MemcachedSyncAdapter
    from limify.core.memcached_protocol import AsyncConnections, SyncConnections, get_command, parse_url

    options = parse_url(url)
    connections = SyncConnections(options.host, options.port)

    def build_sync(limit: int) -> Callable[[str], bool]:
        def check(key: str) -> bool:
            item = key.encode()
            with connections.connection() as conn:
                command = _cas_counter(limit, item, *conn.request(get_command(item)))
                return command is not None and conn.request(command)[0].code == b"HD"

        return check

    adapter = MemcachedSyncAdapter.from_url(url)
    contenders = [
        Contender(MEMCACHED_FLOOR, "floor", build_sync),
        *limify_contenders.store_sync(tag + "cs", url, adapter),
    ]
    sync = latency_section(measure_sync(contenders, tag, batching), MEMCACHED_FLOOR, batching)
    adapter.close()
    connections.close()

    async def run_async() -> dict[str, Any]:
        pool = AsyncConnections(options.host, options.port)

        def build_async(limit: int) -> Callable[[str], Awaitable[bool]]:
            async def check(key: str) -> bool:
                item = key.encode()
                async with pool.connection() as conn:
                    command = _cas_counter(limit, item, *(await conn.request(get_command(item))))
                    return command is not None and (await conn.request(command))[0].code == b"HD"

            return check

        adapter = MemcachedAsyncAdapter.from_url(url)
        contenders = [
            Contender(MEMCACHED_FLOOR, "floor", build_async),
            *limify_contenders.store_async(tag + "ca", url, adapter),
        ]
        measured = await measure_async(contenders, tag, batching)
        await adapter.close()
        await pool.close()
        return latency_section(measured, MEMCACHED_FLOOR, batching)

    return {"memcached_sync": sync, "memcached_async": asyncio.run(run_async())}
