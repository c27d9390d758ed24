"""PostgreSQL storage: the Python transitions over rows locked in one transaction.

Theory of operation
-------------------
Each key is one row of one table (:mod:`limify.core.postgres_sql`): the text of its
algorithm's codec and an expiry in microseconds. A check runs in one transaction:

1. ``SELECT ... ORDER BY key FOR UPDATE``: the check's rows that exist, locked in key
   order; with the server's clock, each row carries ``clock_timestamp()`` as it is
   read, so the last row's time is read once every row is held (app servers with
   skewed clocks agree). One round trip.
2. Only for keys without a row (met for the first time, or swept):
   ``INSERT ... ON CONFLICT DO NOTHING RETURNING key``, in key order (the insert
   locks the new rows); rows another check created meanwhile are locked next, and the
   clock is read again once all are held.
3. :func:`~limify.core.text_state.run_on_text`: the algorithm's transition, in Python,
   on what the codec reads back (an expired row reads as absent).
4. The writes, then ``COMMIT``: all of the check's keys change, or none. An admitted
   check on known keys is three round trips, a refusal two.

No two checks wait on each other in a cycle: each locks existing rows in key order,
then inserts missing ones in key order, and an insert never waits on a committed row.
Should the database still report a deadlock (the rare re-lock of step 2) or a
serialization failure, the check runs again: nothing of it was committed.

Rows that no longer mean anything are deleted when a check meets them, and every
``sweep_every`` checks an adapter deletes up to ``sweep_batch`` other expired rows
(``FOR UPDATE SKIP LOCKED``: never waiting on a live check), so the table stays
bounded without a cron job. A transaction that did not reach ``COMMIT`` had no
effect, so a connection found broken before it (a restarted server) is retried
once on a fresh one within the timeout; a failure at ``COMMIT``, a refused
connection or a timeout is a :class:`limify.StorageError` for the failure policy.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from limify._extras import missing_extra
from limify.core.algorithms.base import Outcome
from limify.core.check import Check
from limify.core.clock import SYSTEM_CLOCK, Clock
from limify.core.forksafe import fork_safe_lock
from limify.core.per_loop import PerLoop
from limify.core.postgres_sql import DEFAULT_TABLE, Decide, RowsBase, parse_url
from limify.core.refusals import forget_cleared
from limify.core.text_state import Saved
from limify.errors import StorageError

try:
    import psycopg
    import psycopg_pool
    from psycopg import errors as pg_errors
except ModuleNotFoundError as error:  # pragma: no cover - the extra is installed for the tests
    raise missing_extra(
        "limify.core.postgres_adapter", "psycopg and psycopg-pool", "postgres", error
    ) from error

__all__ = ["PostgresSyncAdapter", "PostgresAsyncAdapter"]

#: Answers that mean "try the whole transaction again": nothing of it was committed.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_CREATE_RACES = (pg_errors.UniqueViolation, pg_errors.DuplicateTable, pg_errors.DuplicateObject)
_ATTEMPTS = 5
#: What a row inserted for a key met for the first time holds: nothing, expired.
_PLACEHOLDER = Saved("", 0)


class PostgresSyncAdapter(RowsBase):
    """Storage on a :class:`psycopg_pool.ConnectionPool` (see the module docs).

    Args:
        pool: the pool connections are taken from (opened at first use if it is not yet).
        table: the table of the rows (``"name"`` or ``"schema.name"``).
        create_table: create the table and its index when missing (else see docs/postgresql.md).
        clock: ``None`` (default) for the database server's clock, or a
            :class:`~limify.core.clock.Clock` for the caller's.
        timeout: seconds a check may wait for a connection (and, after a broken
            one, for the retry) before raising :class:`limify.StorageError`.
        sweep_every: every this many checks, one batch of expired rows is deleted.
        sweep_batch: how many expired rows one sweep deletes at most.
    """

    def __init__(
        self,
        pool: Any,
        *,
        table: str = DEFAULT_TABLE,
        create_table: bool = True,
        clock: Clock | None = None,
        timeout: float = 5.0,
        sweep_every: int = 100,
        sweep_batch: int = 100,
    ) -> None:
        if not callable(getattr(pool, "connection", None)):
            raise TypeError(f"pool must be a psycopg_pool.ConnectionPool, got {pool!r}")
        super().__init__(
            pool, table=table, create_table=create_table, clock=clock, timeout=timeout,
            sweep_every=sweep_every, sweep_batch=sweep_batch,
        )  # fmt: skip
        self._lock = fork_safe_lock(self)
        #: Builds a fresh pool for a forked child (adapters built from a URL); ``None``: the caller's pool.
        self._new_pool: Callable[[], Any] | None = None
        self._pid = os.getpid()
        #: Pools a forked child inherited: kept, never closed (closing would end the parent's sessions).
        self._inherited: list[Any] = []

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, **options: Any) -> PostgresSyncAdapter:
        """An adapter with a pool of its own for ``url`` (its options: docs/postgresql.md).

        A forked child (a pre-fork server's worker) opens a pool of its own at its first check.
        """
        parsed = parse_url(url)

        def new_pool() -> Any:
            return psycopg_pool.ConnectionPool(
                parsed.conninfo, min_size=parsed.pool_min, max_size=parsed.pool_max, open=False,
                timeout=parsed.timeout, name=f"limify:{parsed.table}",
            )  # fmt: skip

        if clock is None and parsed.client_clock:
            clock = SYSTEM_CLOCK
        adapter = cls(new_pool(), table=parsed.table, create_table=parsed.create_table, clock=clock,
                      timeout=parsed.timeout, **options)  # fmt: skip
        adapter._new_pool = new_pool
        return adapter

    def _after_fork(self) -> None:
        self._pid = os.getpid()
        if self._new_pool is not None:
            self._inherited.append(self.pool)
            self.pool, self._opened = self._new_pool(), False

    def execute(self, check: Check) -> Outcome:
        """Run ``check`` over its locked rows in one transaction (see the module docs)."""
        outcome: Outcome = self._locked(check.keys, self._decide_check(check))
        return outcome

    def hold(self, key: str, ms: int) -> int:
        """The outbound pause of ``key``, on the store's clock."""
        return int(self._locked((key,), self._decide_hold(ms)))

    def clear(self, keys: Sequence[str]) -> None:
        """Delete the rows of ``keys``."""
        forget_cleared(self, keys)  # what this process cached on them no longer holds
        if keys:
            self._transact(lambda conn: conn.execute(self.sql.delete, (self._order(keys)[1],)))

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()

    def _locked(self, keys: Sequence[str], decide: Decide) -> Any:
        encoded, order = self._order(keys)

        def work(conn: Any) -> Any:
            server = self.clock is None
            rows = conn.execute(self.sql.lock_with_clock if server else self.sql.lock, (order,)).fetchall()
            found = self._saved(rows)
            now = max(row[3] for row in rows) if server and rows else 0
            missing = [key for key in order if key not in found]
            if missing:  # keys met for the first time (or swept): rows to lock, after those that exist
                inserted = {bytes(row[0]) for row in conn.execute(self.sql.insert, (missing,)).fetchall()}
                found.update((key, _PLACEHOLDER) for key in inserted)  # dropped after, unless written
                raced = [key for key in missing if key not in inserted]  # created meanwhile by another check
                if raced:
                    found.update(self._saved(conn.execute(self.sql.lock, (raced,)).fetchall()))
                if server:
                    now = conn.execute(self.sql.now).fetchone()[0]  # read once every row is held
            now = int(now) if server else self.clock.now_us()  # type: ignore[union-attr]
            answer, writes = decide([found.get(key) for key in encoded], now)
            for statement, params in self._after(encoded, found, writes, now):
                conn.execute(statement, params)
            return answer

        return self._transact(work)

    def _prepare_table(self, conn: Any) -> None:
        with self._lock:
            if self._ready:
                return
            try:
                with conn.cursor() as cur:
                    for statement in self.sql.create:
                        cur.execute(statement)
                conn.commit()
            except _CREATE_RACES:
                conn.rollback()  # another process created it at the same instant
            self._ready = True

    def _transact(self, work: Callable[[Any], Any]) -> Any:
        if self._pid != os.getpid():
            self._after_fork()
        deadline = time.monotonic() + self.timeout
        stale_retried = False
        for _ in range(_ATTEMPTS):
            committing = False
            try:
                if not self._opened and getattr(self.pool, "closed", False):
                    self._opened = True
                    self.pool.open(wait=False)
                with self.pool.connection(timeout=max(0.001, deadline - time.monotonic())) as conn:
                    if not self._ready:
                        self._prepare_table(conn)
                    answer = work(conn)
                    committing = True
                    conn.commit()
                    return answer
            except _RETRYABLE:
                continue
            except pg_errors.UndefinedTable:
                if not self.create_table or self._recreated:
                    raise
                self._ready, self._recreated = False, True  # dropped, or lost by a restored server
            except psycopg_pool.PoolTimeout as error:
                raise self._failed(error) from error
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                if committing or stale_retried or time.monotonic() >= deadline:
                    raise self._failed(error) from error
                stale_retried = True
                self.pool.check()  # the others idle since the server restarted are broken too
        raise StorageError(f"PostgreSQL: {_ATTEMPTS} attempts of one check all met deadlocks or conflicts")


class PostgresAsyncAdapter(RowsBase):
    """Storage on a :class:`psycopg_pool.AsyncConnectionPool`, for asyncio code.

    The same arguments as :class:`PostgresSyncAdapter`; :meth:`from_url` opens one
    pool per event loop. psycopg's async connections need asyncio (not trio).
    """

    def __init__(
        self,
        pool: Any,
        *,
        table: str = DEFAULT_TABLE,
        create_table: bool = True,
        clock: Clock | None = None,
        timeout: float = 5.0,
        sweep_every: int = 100,
        sweep_batch: int = 100,
    ) -> None:
        if not callable(pool) and not callable(getattr(pool, "connection", None)):
            raise TypeError(f"pool must be a psycopg_pool.AsyncConnectionPool, got {pool!r}")
        super().__init__(
            pool, table=table, create_table=create_table, clock=clock, timeout=timeout,
            sweep_every=sweep_every, sweep_batch=sweep_batch,
        )  # fmt: skip
        self._per_loop: PerLoop[Any] | None = None
        if callable(pool):  # a pool factory (from_url): one pool per event loop, closed with its loop
            self._per_loop = PerLoop(self._open_pool, self._close_pool)

    async def _open_pool(self) -> Any:
        pool = self.pool()
        await pool.open(wait=False)
        return pool

    @staticmethod
    async def _close_pool(pool: Any) -> None:
        await pool.close()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, **options: Any) -> PostgresAsyncAdapter:
        """An adapter that opens a pool of its own for ``url`` in each event loop it runs in."""
        parsed = parse_url(url)

        def new_pool() -> Any:
            return psycopg_pool.AsyncConnectionPool(
                parsed.conninfo, min_size=parsed.pool_min, max_size=parsed.pool_max, open=False,
                timeout=parsed.timeout, name=f"limify:{parsed.table}",
            )  # fmt: skip

        if clock is None and parsed.client_clock:
            clock = SYSTEM_CLOCK
        return cls(new_pool, table=parsed.table, create_table=parsed.create_table, clock=clock,
                   timeout=parsed.timeout, **options)  # fmt: skip

    async def execute_async(self, check: Check) -> Outcome:
        """Run ``check`` over its locked rows in one transaction (see the module docs)."""
        outcome: Outcome = await self._locked(check.keys, self._decide_check(check))
        return outcome

    async def hold_async(self, key: str, ms: int) -> int:
        """The outbound pause of ``key``, on the store's clock."""
        return int(await self._locked((key,), self._decide_hold(ms)))

    async def clear_async(self, keys: Sequence[str]) -> None:
        """Delete the rows of ``keys``."""
        forget_cleared(self, keys)  # what this process cached on them no longer holds
        if keys:
            order = self._order(keys)[1]

            async def work(conn: Any) -> None:
                await conn.execute(self.sql.delete, (order,))

            await self._transact(work)

    async def close(self) -> None:
        """Close the pool (from a URL: this event loop's; the others close with their loops)."""
        if self._per_loop is not None:
            await self._per_loop.close()
        else:
            await self.pool.close()

    async def _current_pool(self) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "PostgresAsyncAdapter needs asyncio: psycopg's async connections do not run on trio; "
                "use memcached:// or memory:// there"
            ) from None
        if self._per_loop is not None:
            return await self._per_loop.get()
        if not self._opened and self.pool.closed:
            self._opened = True
            await self.pool.open(wait=False)
        return self.pool

    async def _locked(self, keys: Sequence[str], decide: Decide) -> Any:
        encoded, order = self._order(keys)

        async def work(conn: Any) -> Any:  # the sync twin's steps, awaited
            server = self.clock is None
            cursor = await conn.execute(self.sql.lock_with_clock if server else self.sql.lock, (order,))
            rows = await cursor.fetchall()
            found = self._saved(rows)
            now = max(row[3] for row in rows) if server and rows else 0
            missing = [key for key in order if key not in found]
            if missing:
                cursor = await conn.execute(self.sql.insert, (missing,))
                inserted = {bytes(row[0]) for row in await cursor.fetchall()}
                found.update((key, _PLACEHOLDER) for key in inserted)
                raced = [key for key in missing if key not in inserted]
                if raced:
                    found.update(self._saved(await (await conn.execute(self.sql.lock, (raced,))).fetchall()))
                if server:
                    now = (await (await conn.execute(self.sql.now)).fetchone())[0]
            now = int(now) if server else self.clock.now_us()  # type: ignore[union-attr]
            answer, writes = decide([found.get(key) for key in encoded], now)
            for statement, params in self._after(encoded, found, writes, now):
                await conn.execute(statement, params)
            return answer

        return await self._transact(work)

    async def _prepare_table(self, conn: Any) -> None:
        try:
            async with conn.cursor() as cur:
                for statement in self.sql.create:
                    await cur.execute(statement)
            await conn.commit()
        except _CREATE_RACES:
            await conn.rollback()
        self._ready = True

    async def _transact(self, work: Callable[[Any], Any]) -> Any:
        deadline = time.monotonic() + self.timeout
        stale_retried = False
        pool = await self._current_pool()
        for _ in range(_ATTEMPTS):
            committing = False
            try:
                async with pool.connection(timeout=max(0.001, deadline - time.monotonic())) as conn:
                    if not self._ready:
                        await self._prepare_table(conn)
                    answer = await work(conn)
                    committing = True
                    await conn.commit()
                    return answer
            except _RETRYABLE:
                continue
            except pg_errors.UndefinedTable:
                if not self.create_table or self._recreated:
                    raise
                self._ready, self._recreated = False, True  # dropped, or lost by a restored server
            except psycopg_pool.PoolTimeout as error:
                raise self._failed(error) from error
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                if committing or stale_retried or time.monotonic() >= deadline:
                    raise self._failed(error) from error
                stale_retried = True
                await pool.check()
        raise StorageError(f"PostgreSQL: {_ATTEMPTS} attempts of one check all met deadlocks or conflicts")
