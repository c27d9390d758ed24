"""A real uvicorn server on loopback, for the tests that go through HTTP end to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tests.servers import free_port


@contextmanager
def uvicorn_serving(app: Any, **options: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port, for the block: its base URL.

    ``options`` go to :class:`uvicorn.Config` (``lifespan`` is off unless given).
    ``proxy_headers`` is off: uvicorn would otherwise rewrite the client address from
    ``X-Forwarded-For`` itself for peers in ``--forwarded-allow-ips`` (127.0.0.1 by
    default), before Limify's own trusted-proxy rules see the request.
    """
    port = free_port()
    options = {"log_level": "warning", "lifespan": "off", **options}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, proxy_headers=False, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive(), "uvicorn did not stop"
