"""One resource per running event loop (a connection pool), closed while that loop shuts down.

Async connections belong to the loop that opened them; an app (or a test suite)
that runs several loops needs one pool per loop. As in
:class:`~limify.core.redis_clients.ClientPerLoop`, each resource is closed while its
loop shuts down: an async generator parked in the loop is finalised at shutdown
(``asyncio.run``, ``anyio.run`` and trio do so), and its ``finally`` closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio.lowlevel

__all__ = ["PerLoop"]

ResourceT = TypeVar("ResourceT")


class PerLoop(Generic[ResourceT]):
    """``await per_loop.get()``: this loop's resource, opened at first use (see the module docs)."""

    def __init__(
        self, open: Callable[[], Awaitable[ResourceT]], close: Callable[[ResourceT], Awaitable[None]]
    ) -> None:
        self._open = open
        self._close = close
        self._entries: dict[Any, tuple[ResourceT, Any]] = {}

    async def get(self) -> ResourceT:
        """The running loop's resource."""
        token = anyio.lowlevel.current_token()
        entry = self._entries.get(token)
        if entry is None:
            resource = await self._open()
            closer = self._close_at_shutdown(token, resource)
            await closer.__anext__()
            entry = self._entries[token] = (resource, closer)
        return entry[0]

    def current(self) -> ResourceT | None:
        """The running loop's resource if it has one yet."""
        entry = self._entries.get(anyio.lowlevel.current_token())
        return None if entry is None else entry[0]

    async def close(self) -> None:
        """Close the running loop's resource now (the others close with their loops)."""
        entry = self._entries.pop(anyio.lowlevel.current_token(), None)
        if entry is not None:
            await entry[1].aclose()

    async def _close_at_shutdown(self, token: Any, resource: ResourceT) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._entries.pop(token, None)
            await self._close(resource)
