"""Memcached storage: the Python transitions under compare-and-set.

Theory of operation
-------------------
A check's states live in one memcached item (a compound limit on one identity
keeps every one of its limits there), so one compare-and-set makes the check
all or nothing:

1. ``mg``: the item's value (each key's codec text and expiry, JSON) and its CAS token;
2. :func:`~limify.core.text_state.run_on_text` on those states, with the adapter's
   clock (memcached tells no time); an expired state reads as absent;
3. ``ms ... C<cas>`` (``ME`` for an item that did not exist): stored only if no
   other check changed the item meanwhile. Otherwise the check starts again at 1
   after a short random pause, at most ``attempts`` times; then it is a
   :class:`limify.StorageError`, for the failure policy. A check that saves
   nothing (a refusal, a peek) needs only step 1.

A check over items that one CAS cannot cover cannot be made atomic: a
``GlobalLimit`` beside per-key limits would need the shared item and the caller's
in one step. :meth:`check_layout` refuses such limits where they are declared.

The item's name is the key itself when that is a plain memcached key (printable
ASCII, at most 250 bytes); any other key, and every check of several keys, is
named by the SHA-256 of its keys (``#`` and 64 hex digits), so hostile keys never
collide and never reach the protocol's text. Memcached may evict any item at any
time: an evicted item is a limit that starts afresh (docs/memcached.md says what
that means for each algorithm).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import anyio

from limify.core.algorithms.base import Outcome
from limify.core.check import Check
from limify.core.clock import SYSTEM_CLOCK, Clock
from limify.core.memcached_protocol import (
    AsyncConnections, ConnectionLost, Reply, SyncConnections, delete_command, get_command, parse_url,
    set_command,
)  # fmt: skip
from limify.core.per_loop import PerLoop
from limify.core.refusals import forget_cleared
from limify.core.text_state import Saved, check_clock, hold_step, run_on_text
from limify.errors import StorageError

__all__ = ["MemcachedSyncAdapter", "MemcachedAsyncAdapter", "item_name"]

#: Seconds of the first pause after a lost compare-and-set; it doubles, with jitter.
_FIRST_PAUSE = 0.0005
_LONGEST_PAUSE = 0.02
_Adapter = TypeVar("_Adapter", bound="_Items")


def item_name(keys: Sequence[str]) -> bytes:
    """The memcached item that holds the states of ``keys`` (see the module docs)."""
    if len(keys) == 1:
        key = keys[0]
        if 0 < len(key) <= 250 and key.isascii() and key.isprintable() and " " not in key and key[0] != "#":
            return key.encode("ascii")
    digest = hashlib.sha256(json.dumps(list(keys)).encode("ascii")).hexdigest()
    return b"#" + digest.encode("ascii")


def _load(value: bytes, count: int) -> list[Saved | None]:
    try:
        rows = json.loads(value)
        saved = [None if row is None else Saved(str(row[0]), int(row[1])) for row in rows]
    except (ValueError, TypeError, IndexError):
        return [None] * count
    return saved if len(saved) == count else [None] * count


def _dump(entries: Sequence[Saved | None]) -> bytes:
    rows = [None if entry is None else [entry.text, entry.expires_us] for entry in entries]
    return json.dumps(rows, separators=(",", ":")).encode("ascii")


class _Items:
    """What both adapters share: the decision on one item and the command that saves it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 11211,
        *,
        timeout: float = 1.0,
        pool_max: int = 10,
        attempts: int = 50,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        check_clock(clock)
        if clock is None:
            raise TypeError("clock must have a now_us() method: memcached tells no time")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
        self.clock = clock
        #: How many compare-and-set rounds one check may lose before a StorageError.
        self.attempts = attempts
        self.host, self.port, self.timeout = host, port, timeout
        self._connect(host, port, timeout, pool_max)

    def _connect(self, host: str, port: int, timeout: float, pool_max: int) -> None:
        """Set up the connections (the sync adapter's pool, the async one's pool per event loop)."""
        raise NotImplementedError

    @classmethod
    def from_url(cls: type[_Adapter], url: str, *, clock: Clock = SYSTEM_CLOCK) -> _Adapter:
        """An adapter for ``memcached://host:port`` (its options: docs/memcached.md)."""
        found = parse_url(url)
        return cls(found.host, found.port, timeout=found.timeout, pool_max=found.pool_max,
                   attempts=found.attempts, clock=clock)  # fmt: skip

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.host}:{self.port}', clock={self.clock!r})"

    def check_layout(self, shared: Sequence[bool]) -> None:
        """Refuse limits whose states one compare-and-set cannot cover (see the module docs).

        ``shared[i]``: whether limit ``i``'s state is shared beyond the caller (a
        ``GlobalLimit``, an application-wide limit). All shared or none is one item.

        Raises:
            ValueError: some limits are shared and others are not.
        """
        if any(shared) and not all(shared):
            raise ValueError(
                "memcached:// cannot check a GlobalLimit (or an application-wide limit) together with "
                "per-key limits atomically: compare-and-set covers one item, and the shared limit's state "
                "cannot live in every caller's item. Put the GlobalLimit on a decorator of its own, or use "
                "a store with transactions (redis://, postgresql://)"
            )

    def _step(self, check: Check, reply: Reply, value: bytes) -> tuple[Outcome, bytes | None]:
        """The check's outcome on the item read, and the command that saves it (``None``: nothing to save)."""
        keys = check.keys
        now = self.clock.now_us()
        saved = _load(value, len(keys)) if reply.code == b"VA" else [None] * len(keys)
        run = run_on_text(check, saved, now)
        if not run.writes:
            return run.outcome, None
        entries = [
            run.writes[index]
            if index in run.writes
            else (entry if entry and entry.expires_us > now else None)
            for index, entry in enumerate(saved)
        ]
        return run.outcome, self._save(item_name(keys), entries, reply, now)

    def _hold_step(self, key: str, ms: int, reply: Reply, value: bytes) -> tuple[int, bytes | None]:
        now = self.clock.now_us()
        saved = _load(value, 1)[0] if reply.code == b"VA" else None
        left, new, write = hold_step(saved, now, ms)
        return left, self._save(item_name((key,)), [new], reply, now) if write else None

    @staticmethod
    def _save(item: bytes, entries: Sequence[Saved | None], reply: Reply, now: int) -> bytes:
        cas = reply.cas if reply.code == b"VA" else None
        live = [entry.expires_us for entry in entries if entry is not None]
        if not live:
            return delete_command(item, cas) if cas is not None else b""
        ttl_s = max(1, math.ceil((max(live) - now) / 1_000_000))
        return set_command(item, _dump(entries), ttl_s, cas)

    @staticmethod
    def _stored(reply: Reply) -> bool:
        """Whether a save went through; ``False``: another check changed the item first."""
        if reply.code == b"HD":
            return True
        if reply.code in (b"EX", b"NS", b"NF"):
            return False
        raise ConnectionLost(f"memcached answered {reply.code!r} to a store")

    @staticmethod
    def _read_again(error: ConnectionLost, sent: bool, retried: bool) -> bool:
        """Whether a failed round may start again on a fresh connection: once, and only when no save
        was sent (its reply lost, it may have been stored: running the check again could count it twice)
        and the failure was no timeout (the call would wait twice as long)."""
        return not sent and not retried and not isinstance(error.__cause__, TimeoutError)

    @staticmethod
    def _pause(attempt: int) -> float:
        return random.uniform(0, min(_LONGEST_PAUSE, _FIRST_PAUSE * 2**attempt))

    def _exhausted(self) -> StorageError:
        return StorageError(f"memcached: {self.attempts} compare-and-set attempts of one check all lost")

    @staticmethod
    def _failed(error: Exception) -> StorageError:
        return StorageError(f"memcached unreachable: {error}")


class MemcachedSyncAdapter(_Items):
    """Storage on one memcached server, from sync code (see the module docs).

    Args:
        host, port: the server.
        timeout: seconds for a connection or a reply before :class:`limify.StorageError`.
        pool_max: idle connections kept for reuse.
        attempts: compare-and-set rounds one check may lose before :class:`limify.StorageError`.
        clock: where ``now`` comes from (memcached tells no time).
    """

    def _connect(self, host: str, port: int, timeout: float, pool_max: int) -> None:
        self.connections = SyncConnections(host, port, timeout=timeout, pool_max=pool_max)

    def execute(self, check: Check) -> Outcome:
        """Run ``check`` on its item under compare-and-set (see the module docs)."""
        outcome: Outcome = self._cas(
            item_name(check.keys), lambda reply, value: self._step(check, reply, value)
        )
        return outcome

    def hold(self, key: str, ms: int) -> int:
        """The outbound pause of ``key``, on the adapter's clock."""
        return int(self._cas(item_name((key,)), lambda reply, value: self._hold_step(key, ms, reply, value)))

    def clear(self, keys: Sequence[str]) -> None:
        """Delete the item of ``keys`` (and of each key alone)."""
        forget_cleared(self, keys)  # what this process cached on them no longer holds
        items = {item_name(keys), *(item_name((key,)) for key in keys)}
        try:
            with self.connections.connection() as conn:
                for item in items:
                    conn.request(delete_command(item, None))
        except ConnectionLost as error:
            raise self._failed(error) from error

    def close(self) -> None:
        """Close the idle connections."""
        self.connections.close()

    def _cas(self, item: bytes, step: Any) -> Any:
        retried = False
        attempt = 0
        while attempt < self.attempts:
            sent = False
            try:
                with self.connections.connection() as conn:
                    reply, value = conn.request(get_command(item))
                    answer, command = step(reply, value)
                    sent = bool(command)
                    if not command or self._stored(conn.request(command)[0]):
                        return answer
            except ConnectionLost as error:
                if not self._read_again(error, sent, retried):
                    raise self._failed(error) from error
                retried = True
                self.connections.discard_idle()
                continue
            time.sleep(self._pause(attempt))
            attempt += 1
        raise self._exhausted()


class MemcachedAsyncAdapter(_Items):
    """Storage on one memcached server, from async code (asyncio or trio); same arguments as the sync one.

    Each event loop gets a connection pool of its own, closed with the loop.
    """

    def _connect(self, host: str, port: int, timeout: float, pool_max: int) -> None:
        async def open_pool() -> AsyncConnections:
            return AsyncConnections(host, port, timeout=timeout, pool_max=pool_max)

        async def close_pool(pool: AsyncConnections) -> None:
            await pool.close()

        self.pools: PerLoop[AsyncConnections] = PerLoop(open_pool, close_pool)

    async def execute_async(self, check: Check) -> Outcome:
        """Run ``check`` on its item under compare-and-set (see the module docs)."""
        outcome: Outcome = await self._cas(
            item_name(check.keys), lambda reply, value: self._step(check, reply, value)
        )
        return outcome

    async def hold_async(self, key: str, ms: int) -> int:
        """The outbound pause of ``key``, on the adapter's clock."""
        return int(
            await self._cas(item_name((key,)), lambda reply, value: self._hold_step(key, ms, reply, value))
        )

    async def clear_async(self, keys: Sequence[str]) -> None:
        """Delete the item of ``keys`` (and of each key alone)."""
        forget_cleared(self, keys)  # what this process cached on them no longer holds
        items = {item_name(keys), *(item_name((key,)) for key in keys)}
        pool = await self.pools.get()
        try:
            async with pool.connection() as conn:
                with anyio.fail_after(self.timeout):
                    for item in items:
                        await conn.request(delete_command(item, None))
        except ConnectionLost as error:
            raise self._failed(error) from error

    async def close(self) -> None:
        """Close this event loop's connections."""
        await self.pools.close()

    async def _cas(self, item: bytes, step: Any) -> Any:
        pool = await self.pools.get()
        retried = False
        attempt = 0
        while attempt < self.attempts:
            sent = False
            try:
                async with pool.connection() as conn:
                    with anyio.fail_after(self.timeout):
                        reply, value = await conn.request(get_command(item))
                        answer, command = step(reply, value)
                        sent = bool(command)
                        if not command or self._stored((await conn.request(command))[0]):
                            return answer
            except ConnectionLost as error:
                if not self._read_again(error, sent, retried):
                    raise self._failed(error) from error
                retried = True
                await pool.discard_idle()
                continue
            await anyio.sleep(self._pause(attempt))
            attempt += 1
        raise self._exhausted()
