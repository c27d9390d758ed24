"""One resource per running event loop (a connection pool), closed while that loop shuts down.

Async connections belong to the loop that opened them; an app (or a test suite)
that runs several loops needs one pool per loop (the PostgreSQL and Memcached pools,
and :class:`~limify.core.redis_clients.ClientPerLoop`'s clients). Each resource is closed
while its loop shuts down: an async generator parked in the loop is finalised at shutdown
(``asyncio.run``, ``anyio.run`` and trio do so), and its ``finally`` closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Generic, TypeVar

import anyio.lowlevel

__all__ = ["PerLoop"]

ResourceT = TypeVar("ResourceT")


class PerLoop(Generic[ResourceT]):
    """``await per_loop.get()``: this loop's resource, opened at first use (see the module docs).

    ``loop_of()`` names the running loop (anyio's token by default: asyncio and trio);
    ``entries`` is the table of resources by loop (a plain dict by default).
    """

    def __init__(
        self,
        open: Callable[[], Awaitable[ResourceT]],
        close: Callable[[ResourceT], Awaitable[None]],
        *,
        loop_of: Callable[[], Any] = anyio.lowlevel.current_token,
        entries: MutableMapping[Any, tuple[ResourceT, Any]] | None = None,
    ) -> None:
        self._open = open
        self._close = close
        self._loop_of = loop_of
        self._entries: MutableMapping[Any, tuple[ResourceT, Any]] = {} if entries is None else entries

    async def get(self) -> ResourceT:
        """The running loop's resource."""
        token = self._loop_of()
        entry = self._entries.get(token)
        if entry is None:
            resource = await self._open()
            closer = self._close_at_shutdown(token, resource)
            await closer.__anext__()
            entry = self._entries[token] = (resource, closer)
        return entry[0]

    def current(self) -> ResourceT | None:
        """The running loop's resource if it has one yet."""
        entry = self._entries.get(self._loop_of())
        return None if entry is None else entry[0]

    async def close(self) -> None:
        """Close the running loop's resource now (the others close with their loops)."""
        entry = self._entries.pop(self._loop_of(), None)
        if entry is not None:
            await entry[1].aclose()

    async def _close_at_shutdown(self, token: Any, resource: ResourceT) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # Forget the loop's resource before closing it, so nothing of it outlives the loop.
            self._entries.pop(token, None)
            await self._close(resource)
