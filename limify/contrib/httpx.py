"""httpx transports that rate-limit outgoing requests and honour the upstream's Retry-After.

.. code-block:: python

    import httpx
    from limify.contrib.httpx import RateLimitTransport

    transport = RateLimitTransport("10/second", storage="redis://localhost:6379/0")
    with httpx.Client(transport=transport) as client:
        client.get("https://api.example.com/items")

Each request first passes the limit of its key (by default the host, with the
port when one is given). When the upstream answers 429 or 503 with
``Retry-After`` (seconds or an HTTP date), that key is paused for that long in
the storage, so every client sharing it (other threads, other processes on the
same Redis) waits, or raises :class:`~limify.RateLimitExceeded` with
``on_exceeded="raise"``, instead of hammering the upstream. The 429 response
itself is returned to the caller; whether to retry it is the caller's choice.

Options (all keyword-only, checked when the transport is built):

``transport``
    the inner transport that sends requests (default ``httpx.HTTPTransport()`` /
    ``httpx.AsyncHTTPTransport()``).
``storage``, ``on_storage_error``
    a URL or adapter, and the failure policy, as for ``@rate_limit``; ``None``
    follows the process defaults (see :func:`limify.configure`), also when they
    change after the transport was built.
``key``
    a callable of the ``httpx.Request`` returning the bucket's key; ``None`` from
    it lets that request through unlimited.
``algorithm``, ``name``
    the algorithm, and the limit's name in storage keys (default ``"outbound"``,
    shared with :mod:`limify.contrib.requests`).
``on_exceeded``, ``max_wait``
    ``"wait"`` (default) sleeps until the request may go, at most ``max_wait``
    seconds in total before raising; ``"raise"`` raises at once.
``pause_on``, ``max_pause``
    the statuses whose ``Retry-After`` pauses the key (default 429 and 503;
    ``()`` ignores Retry-After), and the longest pause taken from one response
    (default 600 seconds).
"""

from __future__ import annotations

from typing import Any

from limify._extras import missing_extra

try:
    import httpx
except ModuleNotFoundError as error:  # the extra is not installed
    raise missing_extra(__name__, "httpx", "httpx", error) from error

from limify.contrib._outbound import AsyncOutboundGate, OutboundGate
from limify.core.plan import Plan

__all__ = ["RateLimitTransport", "AsyncRateLimitTransport", "host_key"]


def host_key(request: httpx.Request) -> str:
    """The default key: ``host``, or ``host:port`` when the URL names a port."""
    url = request.url
    return url.host if url.port is None else f"{url.host}:{url.port}"


class RateLimitTransport(httpx.BaseTransport):
    """A sync ``httpx`` transport that rate-limits the requests of an inner transport."""

    def __init__(
        self, rate: str | Plan, *, transport: httpx.BaseTransport | None = None, **options: Any
    ) -> None:
        """``options``: the gate's, as the module docs list them (``storage``, ``key``, ...)."""
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise TypeError(f"transport must be an httpx.BaseTransport, got {transport!r}")
        self.gate: OutboundGate[httpx.Request] = OutboundGate(rate, default_key=host_key, **options)
        self.transport = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pause_key = self.gate.admit(request)
        response = self.transport.handle_request(request)
        self.gate.observe(pause_key, response.status_code, response.headers.get("Retry-After"))
        return response

    def close(self) -> None:
        self.transport.close()


class AsyncRateLimitTransport(httpx.AsyncBaseTransport):
    """An async ``httpx`` transport that rate-limits the requests of an inner transport."""

    def __init__(
        self, rate: str | Plan, *, transport: httpx.AsyncBaseTransport | None = None, **options: Any
    ) -> None:
        """``options``: the gate's, as the module docs list them (``storage``, ``key``, ...)."""
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(f"transport must be an httpx.AsyncBaseTransport, got {transport!r}")
        self.gate: AsyncOutboundGate[httpx.Request] = AsyncOutboundGate(rate, default_key=host_key, **options)
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pause_key = await self.gate.admit(request)
        response = await self.transport.handle_async_request(request)
        await self.gate.observe(pause_key, response.status_code, response.headers.get("Retry-After"))
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()
