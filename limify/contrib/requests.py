"""A requests transport adapter that rate-limits outgoing requests and honours Retry-After.

.. code-block:: python

    import requests
    from limify.contrib.requests import RateLimitAdapter

    session = requests.Session()
    session.mount("https://", RateLimitAdapter("10/second", storage="redis://localhost:6379/0"))
    session.get("https://api.example.com/items")

It behaves like :class:`limify.contrib.httpx.RateLimitTransport` (same options,
same storage keys under the default name ``"outbound"``, so both libraries
share one budget per host): each request passes its key's limit before it is
sent, and a 429/503 with ``Retry-After`` pauses that key for every client
sharing the storage. ``key`` receives the ``requests.PreparedRequest``. Other
keyword arguments (``pool_connections``, ``max_retries`` ...) go to
``requests.adapters.HTTPAdapter``; note that retries urllib3 makes on its own
(``Retry(status_forcelist=...)``) happen inside one send, past the limit.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from limify._extras import missing_extra

try:
    from requests import PreparedRequest, Response
    from requests.adapters import HTTPAdapter
except ModuleNotFoundError as error:  # the extra is not installed
    raise missing_extra(__name__, "requests", "requests", error) from error

from limify.contrib._outbound import GATE_OPTIONS, OutboundGate
from limify.core.plan import Plan

__all__ = ["RateLimitAdapter", "host_key"]


def host_key(request: PreparedRequest) -> str:
    """The default key: ``host``, or ``host:port`` when the URL names a port."""
    parts = urlsplit(request.url or "")
    host = parts.hostname or ""
    return host if parts.port is None else f"{host}:{parts.port}"


class RateLimitAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose requests pass a Limify limit and respect upstream pauses."""

    def __init__(self, rate: str | Plan, **options: Any) -> None:
        """``options``: the gate's (``storage``, ``key``, ``algorithm``, ``on_exceeded``,
        ``max_wait``, ``pause_on``, ``max_pause``, ``name``, ``on_storage_error``), as for
        :mod:`limify.contrib.httpx`; any other goes to ``HTTPAdapter``."""
        gate_options = {name: options.pop(name) for name in GATE_OPTIONS & options.keys()}
        self.gate: OutboundGate[PreparedRequest] = OutboundGate(rate, default_key=host_key, **gate_options)
        super().__init__(**options)

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        pause_key = self.gate.admit(request)
        response = super().send(request, *args, **kwargs)
        self.gate.observe(pause_key, response.status_code, response.headers.get("Retry-After"))
        return response
