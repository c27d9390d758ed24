"""A real HTTP upstream on a loopback port for the outbound-client tests.

It records when each request arrives and, past its own limit (``limit`` requests
answered 200 per sliding ``window`` seconds), answers 429 with ``Retry-After``
(delta seconds or an HTTP date) and records until when it asked callers to
hold back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from limify import Plan


class Upstream:
    """The server's record: arrivals and refusals, guarded by one lock."""

    def __init__(self, limit: int | None = None, window: float = 1.0, retry_after: str = "seconds") -> None:
        self.limit = limit
        self.window = window
        self.retry_after = retry_after
        self.arrivals: list[float] = []
        #: (time the 429 was sent, time the upstream asked callers to wait until)
        self.refusals: list[tuple[float, float]] = []
        self._served: list[float] = []
        self.lock = threading.Lock()
        self.url = ""

    def decide(self) -> tuple[int, dict[str, str]]:
        """Record one arrival; the status and headers to answer it with."""
        with self.lock:
            now = time.time()
            self.arrivals.append(now)
            self._served = [t for t in self._served if t > now - self.window]
            if self.limit is None or len(self._served) < self.limit:
                self._served.append(now)
                return 200, {}
            if self.retry_after == "date":
                until = math.floor(now) + 2.0  # HTTP dates have whole seconds: 1 to 2 s away
                header = formatdate(until, usegmt=True)
            else:
                until = now + 1.0
                header = "1"
            self.refusals.append((now, until))
            return 429, {"Retry-After": header}

    def early_arrivals(self) -> list[float]:
        """Arrivals that came after a 429 but before the Retry-After it gave had passed."""
        return [t for sent, until in self.refusals for t in self.arrivals if sent < t < until]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: Upstream

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, headers = self.upstream.decide()
        body = b"ok" if status == 200 else b"slow down"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(upstream: Upstream) -> Iterator[Upstream]:
    """Run ``upstream`` on a free loopback port for the duration of the generator."""
    handler = type("Handler", (_Handler,), {"upstream": upstream})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def open_upstream() -> Iterator[Upstream]:
    """An upstream with no limit of its own: it only counts."""
    yield from serve(Upstream())


@pytest.fixture(params=["seconds", "date"])
def strict_upstream(request: pytest.FixtureRequest) -> Iterator[Upstream]:
    """An upstream allowing 3 requests per second, answering 429 + Retry-After (seconds or date)."""
    yield from serve(Upstream(limit=3, window=1.0, retry_after=request.param))


def rate_violations(sent: list[float], plan: Plan, slack: float = 0.05) -> list[tuple[int, float]]:
    """Spans where more requests were sent than a token bucket of ``plan`` can admit.

    A bucket admits at most ``limit + rate * (t_j - t_i)`` calls in ``[t_i, t_j]``.
    ``sent`` are the times the client handed requests to the network, right after
    admission (the upstream's arrival times bunch up with connection set-up and
    thread scheduling, which no client-side limit controls); ``slack`` seconds
    allow for a thread switch between the admission and the record.
    """
    times = sorted(sent)
    rate = plan.limit / plan.period_seconds
    return [
        (j - i + 1, times[j] - times[i])
        for i in range(len(times))
        for j in range(i, len(times))
        if j - i + 1 > plan.limit + rate * (times[j] - times[i] + slack)
    ]
