"""httpx and requests clients that keep to a rate and honour an upstream's Retry-After.

Starts its own "upstream" on a loopback port: it serves 3 requests per second and
answers 429 with "Retry-After: 1" beyond that. The clients limit themselves to
10 requests per second, faster than the upstream allows, so they meet a 429; the
transport then pauses that host for one second (in the storage, so every client
sharing it holds back), and the next request waits instead of hammering.

Run:  python -m pip install '.[httpx,requests]' && python examples/outbound_transports.py
Or with one library only:
      python -m pip install '.[httpx]' && python examples/outbound_transports.py httpx
      python -m pip install '.[requests]' && python examples/outbound_transports.py requests
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from limify import InMemoryAdapter

served: list[float] = []
lock = threading.Lock()


class Upstream(BaseHTTPRequestHandler):
    """3 requests per sliding second, then 429 + Retry-After: 1."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        with lock:
            now = time.monotonic()
            served[:] = [t for t in served if t > now - 1.0]
            refused = len(served) >= 3
            if not refused:
                served.append(now)
        self.send_response(429 if refused else 200)
        if refused:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def show(label: str, started: float, status: int) -> None:
    print(f"  {label} {time.monotonic() - started:4.2f}s  {status}")


def with_httpx(url: str) -> None:
    import httpx

    from limify.contrib.httpx import RateLimitTransport

    print("httpx: 5 requests; the 4th meets a 429, the 5th waits out Retry-After")
    transport = RateLimitTransport("10/second", storage=InMemoryAdapter())
    started = time.monotonic()
    with httpx.Client(transport=transport) as client:
        for _ in range(5):
            show("GET", started, client.get(url).status_code)


async def with_httpx_async(url: str) -> None:
    import httpx

    from limify.contrib.httpx import AsyncRateLimitTransport

    print("httpx async: the same with AsyncRateLimitTransport")
    transport = AsyncRateLimitTransport("10/second", storage=InMemoryAdapter())
    started = time.monotonic()
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(5):
            show("GET", started, (await client.get(url)).status_code)


def with_requests(url: str) -> None:
    import requests

    from limify.contrib.requests import RateLimitAdapter

    print("requests: RateLimitAdapter mounted on a Session")
    session = requests.Session()
    session.mount("http://", RateLimitAdapter("10/second", storage=InMemoryAdapter()))
    started = time.monotonic()
    with session:
        for _ in range(5):
            show("GET", started, session.get(url).status_code)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/items"
    libraries = sys.argv[1:] or ["httpx", "requests"]
    try:
        if "httpx" in libraries:
            with_httpx(url)
            time.sleep(1)  # let the upstream's window empty between demos
            asyncio.run(with_httpx_async(url))
        if "requests" in libraries:
            if "httpx" in libraries:
                time.sleep(1)
            with_requests(url)
    finally:
        server.shutdown()
        server.server_close()
