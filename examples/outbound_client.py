"""Outbound API client: stay under a partner API's limit by waiting, sync and async.

Starts its own tiny HTTP "partner API" on a loopback port, so no network is needed.
The client functions wait (on_exceeded="wait") until the limit admits them, but
never longer than max_wait: a call that would have to wait longer raises
RateLimitExceeded at once, so a caller can fall back instead of hanging.

Run:  python examples/outbound_client.py
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from limify import RateLimitExceeded, rate_limit


class PartnerAPI(BaseHTTPRequestHandler):
    """Stands in for the remote API: answers every GET with a JSON quote."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"symbol": self.path.strip("/"), "price": 101.5}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), PartnerAPI)
HOST, PORT = "127.0.0.1", server.server_address[1]


@rate_limit("2/second", on_exceeded="wait", max_wait=2.0)
def get_quote(symbol: str) -> dict[str, object]:
    """Sync client: the partner allows 2 calls per second; wait up to 2 s for a turn."""
    with urllib.request.urlopen(f"http://{HOST}:{PORT}/{symbol}", timeout=5) as response:
        result: dict[str, object] = json.load(response)
        return result


@rate_limit("2/second", on_exceeded="wait", max_wait=2.0)
async def get_quote_async(symbol: str) -> dict[str, object]:
    """Async client: the same limit, waiting with asyncio.sleep instead of blocking."""
    reader, writer = await asyncio.open_connection(HOST, PORT)
    writer.write(f"GET /{symbol} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    result: dict[str, object] = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return result


@rate_limit("1/minute", on_exceeded="wait", max_wait=0.5)
def get_report() -> dict[str, object]:
    """A scarce endpoint: once a minute; waiting a minute is not worth it, so max_wait=0.5."""
    with urllib.request.urlopen(f"http://{HOST}:{PORT}/report", timeout=5) as response:
        result: dict[str, object] = json.load(response)
        return result


def sync_demo() -> None:
    print("sync: 5 quotes at 2/second (a burst of 2, then one every 0.5 s)")
    started = time.monotonic()
    for symbol in ("ACME", "GLBX", "INIT", "UMBR", "WAYN"):
        quote = get_quote(symbol)
        print(f"  {time.monotonic() - started:4.2f}s  {quote}")
    get_report()
    try:
        get_report()
    except RateLimitExceeded as refused:
        print(f"  report: would wait {refused.retry_after:.0f}s > max_wait=0.5s, refused at once")


async def async_demo() -> None:
    print("async: 5 concurrent quotes at 2/second, waiting without blocking the loop")
    started = time.monotonic()

    async def one(symbol: str) -> None:
        quote = await get_quote_async(symbol)
        print(f"  {time.monotonic() - started:4.2f}s  {quote}")

    await asyncio.gather(*(one(symbol) for symbol in ("ACME", "GLBX", "INIT", "UMBR", "WAYN")))


if __name__ == "__main__":
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sync_demo()
        asyncio.run(async_demo())
    finally:
        server.shutdown()
        server.server_close()
