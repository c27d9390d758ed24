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
from limify.core.forksafe import fork_safe_lock
from limify.core.per_loop import PerLoop
from limify.core.postgres_sql import Decide, RowsBase, Steps
from limify.core.refusals import forget_cleared
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

    :meth:`from_url` builds one with a pool of its own; a forked child (a pre-fork
    server's worker) then opens a pool of its own at its first check.
    """

    pool_class = psycopg_pool.ConnectionPool
    #: Builds a fresh pool for a forked child (adapters built from a URL); ``None``: the caller's pool.
    _new_pool: Callable[[], Any] | None = None

    def _setup(self) -> None:
        self._lock = fork_safe_lock(self)
        self._pid = os.getpid()
        #: Pools a forked child inherited: kept, never closed (closing would end the parent's sessions).
        self._inherited: list[Any] = []

    @classmethod
    def _with_pools(cls, new_pool: Callable[[], Any], options: dict[str, Any]) -> PostgresSyncAdapter:
        adapter = cls(new_pool(), **options)
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
        def work(conn: Any) -> Any:
            steps = Steps(self.steps(keys, decide))
            statement = steps.send(None)
            while statement is not None:
                cursor = conn.execute(statement[0], statement[1])
                statement = steps.send(cursor.fetchall() if statement[2] else None)
            return steps.answer

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
        tries = _Tries(self)
        while tries.left():
            committing = False
            try:
                if not self._opened and getattr(self.pool, "closed", False):
                    self._opened = True
                    self.pool.open(wait=False)
                with self.pool.connection(timeout=tries.wait()) as conn:
                    if not self._ready:
                        self._prepare_table(conn)
                    answer = work(conn)
                    committing = True
                    conn.commit()
                    return answer
            except Exception as error:
                if tries.failed(error, committing):
                    self.pool.check()  # the others idle since the server restarted are broken too
        raise tries.exhausted()


class PostgresAsyncAdapter(RowsBase):
    """Storage on a :class:`psycopg_pool.AsyncConnectionPool`, for asyncio code.

    The same arguments as :class:`PostgresSyncAdapter`; ``pool`` may also be a
    function that makes a pool, called once per event loop (what :meth:`from_url`
    passes: a pool per loop, closed with its loop). psycopg's async connections
    need asyncio (not trio).
    """

    pool_class = psycopg_pool.AsyncConnectionPool

    @staticmethod
    def _accepts(pool: Any) -> bool:
        return callable(pool) or RowsBase._accepts(pool)

    def _setup(self) -> None:
        self._per_loop: PerLoop[Any] | None = None
        if callable(self.pool):  # a pool factory (from_url): one pool per event loop, closed with its loop
            self._per_loop = PerLoop(self._open_pool, self._close_pool)

    @classmethod
    def _with_pools(cls, new_pool: Callable[[], Any], options: dict[str, Any]) -> PostgresAsyncAdapter:
        return cls(new_pool, **options)

    async def _open_pool(self) -> Any:
        pool = self.pool()
        await pool.open(wait=False)
        return pool

    @staticmethod
    async def _close_pool(pool: Any) -> None:
        await pool.close()

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
        async def work(conn: Any) -> Any:  # the sync twin's loop, awaited
            steps = Steps(self.steps(keys, decide))
            statement = steps.send(None)
            while statement is not None:
                cursor = await conn.execute(statement[0], statement[1])
                statement = steps.send(await cursor.fetchall() if statement[2] else None)
            return steps.answer

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
        pool = await self._current_pool()
        tries = _Tries(self)
        while tries.left():
            committing = False
            try:
                async with pool.connection(timeout=tries.wait()) as conn:
                    if not self._ready:
                        await self._prepare_table(conn)
                    answer = await work(conn)
                    committing = True
                    await conn.commit()
                    return answer
            except Exception as error:
                if tries.failed(error, committing):
                    await pool.check()
        raise tries.exhausted()


class _Tries:
    """The tries of one transaction, within the adapter's timeout (see the module docs).

    Nothing of a try that did not reach ``COMMIT`` was committed, so a deadlock or a
    serialization failure tries again, a lost table is created again once, and a
    broken connection is replaced once; anything else ends the check.
    """

    __slots__ = ("adapter", "deadline", "tried", "stale_retried")

    def __init__(self, adapter: RowsBase) -> None:
        self.adapter = adapter
        self.deadline = time.monotonic() + adapter.timeout
        self.tried = 0
        self.stale_retried = False

    def left(self) -> bool:
        """Whether another try may start."""
        self.tried += 1
        return self.tried <= _ATTEMPTS

    def wait(self) -> float:
        """How long this try may wait for a connection."""
        return max(0.001, self.deadline - time.monotonic())

    def failed(self, error: Exception, committing: bool) -> bool:
        """Raise what ends the check after ``error``; else ``True`` when the pool's idle connections
        should be checked before the next try (a broken one was met)."""
        adapter = self.adapter
        if isinstance(error, _RETRYABLE):
            return False
        if isinstance(error, pg_errors.UndefinedTable) and adapter.create_table and not adapter._recreated:
            adapter._ready, adapter._recreated = False, True  # dropped, or lost by a restored server
            return False
        if isinstance(error, psycopg_pool.PoolTimeout):
            raise adapter._failed(error) from error
        if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
            if committing or self.stale_retried or time.monotonic() >= self.deadline:
                raise adapter._failed(error) from error
            self.stale_retried = True
            return True
        raise error

    @staticmethod
    def exhausted() -> StorageError:
        return StorageError(f"PostgreSQL: {_ATTEMPTS} attempts of one check all met deadlocks or conflicts")
