"""Sending commands to Redis at most once, on the client's own connections.

See the section comment below; :mod:`limify.core.redis_cluster_sending` holds the
cluster clients' twins and the sender factories.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from limify.core.redis_errors import client_error_names, is_reply_error
from limify.core.redis_eviction import CONFIG_GET, EvictionCheck
from limify.core.redis_retry_gates import SENDING, AsyncGate, SyncGate, gate_retry
from limify.core.resp import packed

__all__ = ["SyncSender", "AsyncSender", "is_stale", "quietly", "quietly_async", "reply_or_raise"]

# ---------------------------------------------------------------------------
# Sending scripts at most once
# ---------------------------------------------------------------------------
#
# redis-py re-sends a command whose connection failed, as often as the client's
# ``Retry`` allows (redis-py 8 allows 10 by default, with backoff): its
# ``execute_command`` and its pipelines run on ``connection.retry``. For a script
# whose reply was lost, that runs the script twice: one call is counted twice, a
# refund gives its cost back twice. And every attempt waits for its own timeout.
#
# So Limify sends its scripts itself, on a connection it takes from the client's
# own pool, and never sends them again: a failure after sending surfaces as is
# (the adapter turns it into StorageError, for the failure policy). A connection
# found dead before anything was sent on it, such as one the server closed while it
# sat idle, is replaced first, which is safe. While Limify holds a connection its
# retry policy is gated off (see limify.core.redis_retry_gates), so that reconnecting does not retry either;
# everyone else using the client keeps the policy it configured. Cluster clients
# already connect without retries; they are sent each script on the node that owns
# its slot (``target_nodes``), which turns off their own re-sending.

log = logging.getLogger("limify")


def _checkout_args(pool: Any) -> tuple[str, ...]:
    """What ``pool.get_connection`` needs: a command name for valkey-py and redis-py < 5.3, else nothing."""
    try:
        parameters = list(inspect.signature(pool.get_connection).parameters.values())
    except (TypeError, ValueError):
        return ("EVALSHA",)
    if parameters and parameters[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        if parameters[0].default is inspect.Parameter.empty:
            return ("EVALSHA",)
    return ()


def _server_of(connection: Any) -> str:
    path = getattr(connection, "path", None)
    if isinstance(path, str) and path:
        return f"unix:{path}"
    return f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"


def reply_or_raise(replies: list[Any]) -> Any:
    reply = replies[0]
    if isinstance(reply, Exception):
        raise reply
    return reply


class SyncSender:
    """Sends commands once on a ``redis.Redis``-like client's pool (standalone or Sentinel)."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = weakref.ref(client)
        self._evictions = evictions
        self._checkout_args = _checkout_args(client.connection_pool)

    def call(self, *args: Any) -> Any:
        """Send one command once; its error reply is raised."""
        return reply_or_raise(self.run([args]))

    def load(self, script: str) -> None:
        """SCRIPT LOAD ``script``."""
        self.call("SCRIPT", "LOAD", script)

    def delete(self, keys: Sequence[str]) -> None:
        """DEL ``keys``."""
        self.call("DEL", *keys)

    def run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one round trip, once; error replies come back in place."""
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        token = SENDING.set(True)
        try:
            connection, release, pooled = self._checkout(client)
            try:
                return self._exchange(client, connection, commands, pooled)
            finally:
                release()
        finally:
            SENDING.reset(token)

    def _checkout(self, client: Any) -> tuple[Any, Callable[[], Any], bool]:
        single = getattr(client, "connection", None)
        if single is not None:  # a single_connection_client
            lock = getattr(client, "single_connection_lock", None)
            if lock is None:
                return single, lambda: None, False
            lock.acquire()
            return single, lock.release, False
        pool = client.connection_pool
        gate_retry(pool.connection_kwargs, SyncGate)
        # The pool hands out connections checked for EOF and unread data.
        connection = pool.get_connection(*self._checkout_args)
        return connection, lambda: pool.release(connection), True

    def _exchange(
        self, client: Any, connection: Any, commands: Sequence[tuple[Any, ...]], checked: bool
    ) -> list[Any]:
        try:
            gate_retry(connection, SyncGate)
            if not checked and _is_stale_sync(connection):
                # Closed by the server while idle: nothing was sent on it yet.
                connection.disconnect()
                connection.connect()
            server = _server_of(connection)
            if self._evictions.claim(server):
                self._check_eviction(connection, server)
            connection.send_packed_command(packed(commands, connection))
            return [_read_reply_sync(client, connection, args) for args in commands]
        except BaseException as error:
            if not is_reply_error(error):
                quietly(connection.disconnect)
            raise

    def _check_eviction(self, connection: Any, server: str) -> None:
        try:
            connection.send_command(*CONFIG_GET)
            self._evictions.report(server, connection.read_response())
        except BaseException as error:
            self._evictions.failed(server, error)


class AsyncSender:
    """Awaitable twin of :class:`SyncSender`, on a ``redis.asyncio.Redis``-like client."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = weakref.ref(client)
        self._evictions = evictions
        self._checkout_args = _checkout_args(client.connection_pool)

    async def call(self, *args: Any) -> Any:
        """Send one command once; its error reply is raised."""
        return reply_or_raise(await self.run([args]))

    async def load(self, script: str) -> None:
        """SCRIPT LOAD ``script``."""
        await self.call("SCRIPT", "LOAD", script)

    async def delete(self, keys: Sequence[str]) -> None:
        """DEL ``keys``."""
        await self.call("DEL", *keys)

    async def run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one round trip, once; error replies come back in place."""
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        token = SENDING.set(True)
        try:
            connection, release, checked = await self._checkout(client)
            try:
                # Closed by the server while idle (its `timeout`), or left with unread
                # data: nothing was sent on it yet, so a fresh connection is safe.
                stale = False if checked else await is_stale(connection)
                return await self._exchange(client, connection, commands, stale)
            finally:
                await release()
        finally:
            SENDING.reset(token)

    async def _checkout(self, client: Any) -> tuple[Any, Callable[[], Awaitable[Any]], bool]:
        """The connection to send on, how to give it back, and whether it was checked for
        EOF and unread data on the way (see :func:`is_stale`)."""
        if getattr(client, "single_connection_client", False):
            await client.initialize()
            single = client.connection
            lock = getattr(client, "_single_conn_lock", None)
            if lock is None:
                return single, _nothing, False
            await lock.acquire()

            async def unlock() -> None:
                lock.release()

            return single, unlock, False
        pool = client.connection_pool
        gate_retry(pool.connection_kwargs, AsyncGate)
        connection = await pool.get_connection(*self._checkout_args)
        # redis.asyncio's and valkey's pools replace a connection found closed or holding
        # unread data (ensure_connection), except redis-py 8's with maintenance notifications
        # on; checking again would cost each call another timed read and a turn of the loop.
        # (Written here rather than in a helper: one frame less on every call.)
        notifications = getattr(pool, "maint_notifications_enabled", None)
        checked = hasattr(pool, "ensure_connection") and (notifications is None or not notifications())
        return connection, lambda: pool.release(connection), checked

    async def _exchange(
        self, client: Any, connection: Any, commands: Sequence[tuple[Any, ...]], stale: bool
    ) -> list[Any]:
        try:
            gate_retry(connection, AsyncGate)
            if stale:
                await connection.disconnect(nowait=True)
                await connection.connect()
            server = _server_of(connection)
            if self._evictions.claim(server):
                await self._check_eviction(connection, server)
            data = packed(commands, connection)
            # One deadline for the round trip instead of the connection's own timeout, which
            # redis.asyncio applies by running every send as a task under wait_for and arming
            # a timer around every read (a fifth of a script's client time, a tenth of each
            # check's in a pipeline). The connection is ours alone until it goes back.
            timeout = getattr(connection, "socket_timeout", None)
            connection.socket_timeout = None
            try:
                async with _deadline(timeout):
                    await connection.send_packed_command(data)
                    replies = []
                    for args in commands:
                        try:
                            replies.append(await client.parse_response(connection, args[0]))
                        except Exception as error:
                            replies.append(reply_in_place(error))
                    return replies
            except TimeoutError:
                if timeout is None:
                    raise
                # An OSError: unreachable, as the client's own timeout is.
                raise TimeoutError(f"Timeout talking to {server} after {timeout} s") from None
            finally:
                connection.socket_timeout = timeout
        except BaseException as error:
            if not is_reply_error(error):
                await quietly_async(connection.disconnect(nowait=True))
            raise

    async def _check_eviction(self, connection: Any, server: str) -> None:
        try:
            await connection.send_command(*CONFIG_GET)
            self._evictions.report(server, await connection.read_response())
        except BaseException as error:
            self._evictions.failed(server, error)


def _is_stale_sync(connection: Any) -> bool:
    """True when a connected socket is at EOF or holds unread data (redis-py raises on EOF)."""
    if getattr(connection, "_sock", True) is None:
        return False  # not connected: it connects when used
    try:
        return bool(connection.can_read())
    except Exception as error:
        if client_error_names(error) & {"ConnectionError", "TimeoutError"} or isinstance(error, OSError):
            return True
        raise


async def _nothing() -> None:
    return None


async def is_stale(connection: Any) -> bool:
    """True when a pooled asyncio connection is at EOF or holds unread data.

    redis.asyncio's pools check this on checkout, but redis-py 8 skips the check
    when RESP3 maintenance notifications are on (the default), so a connection the
    server closed while idle is handed out as if alive.
    """
    probe = getattr(connection, "can_read", None)
    if probe is None or not inspect.iscoroutinefunction(probe):
        probe = connection.can_read_destructive
    try:
        return bool(await probe())
    except Exception as error:
        if client_error_names(error) & {"ConnectionError", "TimeoutError"} or isinstance(error, OSError):
            return True
        raise


def quietly(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception:  # the original error is what matters
        pass


async def quietly_async(action: Awaitable[Any]) -> None:
    try:
        await action
    except Exception:
        pass


def reply_in_place(error: Exception) -> Exception:
    """``error`` if it is the server's error reply to one command (kept in its place among the
    replies: the connection is still in step); anything else is raised again."""
    if not is_reply_error(error):
        raise error
    return error


def _read_reply_sync(client: Any, connection: Any, command: tuple[Any, ...]) -> Any:
    try:
        return client.parse_response(connection, command[0])
    except Exception as error:
        return reply_in_place(error)


@contextlib.asynccontextmanager
async def _fail_after(seconds: float | None) -> AsyncIterator[None]:
    with anyio.fail_after(seconds):
        yield


#: The deadline of one exchange (``None``: none): asyncio's own timeout where it has one
#: (3.11), which costs a fraction of anyio's cancel scope (redis.asyncio is asyncio's alone).
_deadline: Callable[[float | None], AbstractAsyncContextManager[Any]] = getattr(
    asyncio, "timeout", _fail_after
)
