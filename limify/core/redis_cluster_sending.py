"""Sending scripts at most once on cluster clients, other clients' plain path, and the sender factories.

See "Sending scripts at most once" in :mod:`limify.core.redis_sending`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from limify.core.redis_errors import client_error_names
from limify.core.redis_eviction import CONFIG_GET, EvictionCheck
from limify.core.redis_sending import AsyncSender, SyncSender, is_stale, quietly, quietly_async

__all__ = [
    "SyncClusterSender",
    "AsyncClusterSender",
    "PlainSender",
    "AsyncPlainSender",
    "sync_sender",
    "async_sender",
]


async def _drop_stale(node: Any) -> None:
    """Disconnect the idle connection a redis.asyncio cluster node hands out next, if the server closed it.

    Unlike the pools of standalone clients, a cluster node hands out its idle
    connections unchecked, the oldest first (``_free``, redis.asyncio's deque of
    them; without it there is nothing to do). A disconnected one reconnects when
    used, which is safe: nothing was sent on it.

    The connection leaves ``_free`` while it is probed and goes back to its place
    afterwards: the probe reads from the socket and awaits, and a task handed the
    same connection meanwhile would read beside it (hiredis' parser refuses that
    with ``read() called while another coroutine is already waiting``).
    """
    free = getattr(node, "_free", None)
    if not free:
        return
    connection = free.popleft()
    try:
        if getattr(connection, "is_connected", False) and await is_stale(connection):
            await quietly_async(connection.disconnect(nowait=True))
    finally:
        free.appendleft(connection)


def _cluster_target(client: Any, args: tuple[Any, ...]) -> Any:
    """The node owning a script's first key (EVALSHA sha numkeys key...), or the default node.

    Raises ``SlotNotCoveredError`` when the client's slot map has a hole (it was read
    while the cluster was failing over); the caller then has the map read again.
    """
    if len(args) > 3 and int(args[2]) > 0:
        return client.get_node_from_key(args[3])
    return client.get_default_node()


def _slot_map_is_stale(error: BaseException) -> bool:
    return "SlotNotCoveredError" in client_error_names(error)


class SyncClusterSender:
    """Sends each script once, to the node that owns its slot, on a ``RedisCluster``-like client.

    With ``target_nodes`` the cluster client does not re-send a command whose
    connection failed (it still follows ``MOVED``/``ASK``, which mean the script did
    not run); its node connections never retry.
    """

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = weakref.ref(client)
        self._evictions = evictions

    def call(self, *args: Any) -> Any:
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        try:
            node = _cluster_target(client, args)
        except Exception as error:
            if _slot_map_is_stale(error):  # as the cluster client does itself: read the layout again
                quietly(client.nodes_manager.initialize)
            raise
        if self._evictions.claim(node.name):
            try:
                self._evictions.report(node.name, client.execute_command(*CONFIG_GET, target_nodes=node))
            except BaseException as error:
                self._evictions.failed(node.name, error)
        return client.execute_command(*args, target_nodes=node)

    def load(self, script: str) -> None:
        """SCRIPT LOAD ``script`` on every primary (the cluster client's way)."""
        self._client().script_load(script)  # type: ignore[union-attr]

    def delete(self, keys: Sequence[str]) -> None:
        """DEL ``keys``, split by slot as the cluster client does."""
        self._client().delete(*keys)  # type: ignore[union-attr]


class AsyncClusterSender:
    """Awaitable twin of :class:`SyncClusterSender`, on ``redis.asyncio.RedisCluster``."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = weakref.ref(client)
        self._evictions = evictions

    async def call(self, *args: Any) -> Any:
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        await client.initialize()  # a no-op once done; again after a node failed
        try:
            node = _cluster_target(client, args)
        except Exception as error:
            if _slot_map_is_stale(error):  # as the cluster client does itself: the next call starts afresh
                await quietly_async(client.aclose())
            raise
        await _drop_stale(node)
        if self._evictions.claim(node.name):
            try:
                self._evictions.report(
                    node.name, await client.execute_command(*CONFIG_GET, target_nodes=node)
                )
            except BaseException as error:
                self._evictions.failed(node.name, error)
        return await client.execute_command(*args, target_nodes=node)

    async def load(self, script: str) -> None:
        """SCRIPT LOAD ``script`` on every primary (the cluster client's way)."""
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        await client.initialize()
        for node in client.get_primaries():
            await _drop_stale(node)
        await client.script_load(script)

    async def delete(self, keys: Sequence[str]) -> None:
        """DEL ``keys``, split by slot as the cluster client does."""
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        await client.initialize()
        for node in {id(node): node for node in map(client.get_node_from_key, keys)}.values():
            await _drop_stale(node)
        await client.delete(*keys)


class PlainSender:
    """For clients of another kind: their own ``execute_command``, with whatever retries they do."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = client

    def call(self, *args: Any) -> Any:
        return self._client.execute_command(*args)

    def load(self, script: str) -> None:
        self._client.script_load(script)

    def delete(self, keys: Sequence[str]) -> None:
        self._client.delete(*keys)


class AsyncPlainSender:
    """Awaitable twin of :class:`PlainSender`."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = client

    async def call(self, *args: Any) -> Any:
        return await self._client.execute_command(*args)

    async def load(self, script: str) -> None:
        await self._client.script_load(script)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._client.delete(*keys)


def _is_cluster(client: Any) -> bool:
    return hasattr(client, "get_nodes") and hasattr(client, "get_node_from_key")


def _sender(client: Any, evictions: EvictionCheck, cluster: type, single: type, plain: type) -> Any:
    if _is_cluster(client):
        return cluster(client, evictions)
    if hasattr(getattr(client, "connection_pool", None), "get_connection") and hasattr(
        client, "parse_response"
    ):
        return single(client, evictions)
    return plain(client, evictions)


def sync_sender(client: Any, evictions: EvictionCheck) -> Any:
    """The sender for a synchronous client (see the section comment above)."""
    return _sender(client, evictions, SyncClusterSender, SyncSender, PlainSender)


def async_sender(client: Any, evictions: EvictionCheck) -> Any:
    """The sender for an asyncio client (see the section comment above)."""
    return _sender(client, evictions, AsyncClusterSender, AsyncSender, AsyncPlainSender)
