"""Real HTTP load: ``wrk`` against one-worker uvicorn FastAPI apps on loopback.

Each contender of :mod:`benchmarks.http_apps` is served on each store by its own
uvicorn process (one worker), all started before the first measurement and
stopped at the end. A *measurement* is one ``wrk -t2 -c32 -d<secs> --latency``
run against one route: requests per second and the latency percentiles wrk's
HDR histogram gives (p50, p99, p99.9, through a small Lua ``done`` hook, since
``--latency`` alone prints no p99.9). Before the first measurement each route
gets one priming request (on the refused route it spends the limit of 1 per
hour) and, in full mode, an unrecorded warm-up run. A *repeat* measures every
(app, route) pair once, in an order rotated by one per repeat, so drift on a
shared machine lands on every row alike; a row reports the medians of its
repeats. A measurement whose statuses are not the expected ones (any non-2xx on
an allowed or open route, any 2xx on the refused route) is counted in
``unexpected``.

The collector's work during each measurement is read from the app's ``/_gc``
route before and after: collections per generation and milliseconds spent, per
10,000 requests.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.http_apps import CONTENDERS, ROUTES, STORES
from benchmarks.redis_server import stop_process

__all__ = [
    "HttpSettings", "QUICK_HTTP", "FULL_HTTP", "rows_to_measure", "measure_http", "http_section", "http_peers",
    "server_info", "LABELS",
]  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
MARKER = "LIMIFY_WRK "
#: wrk's done() hook: one line of JSON after the marker (latencies in microseconds).
_WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  local fields = {
    requests = summary.requests, duration_us = summary.duration, p50 = latency:percentile(50),
    p90 = latency:percentile(90), p99 = latency:percentile(99), p999 = latency:percentile(99.9),
    max = latency.max, non_2xx_3xx = e.status, connect = e.connect, read = e.read, write = e.write,
    timeout = e.timeout,
  }
  local parts = {}
  for name, value in pairs(fields) do
    parts[#parts + 1] = string.format('"%s": %d', name, value)
  end
  io.write("LIMIFY_WRK {" .. table.concat(parts, ", ") .. "}\\n")
end
"""
LABELS = {
    "baseline": "no limiter",
    "limify-middleware": "Limify middleware",
    "limify-dependency": "Limify dependency",
    "limify-decorator": "Limify @rate_limit",
    "slowapi": "slowapi",
    "fastapi-limiter": "fastapi-limiter",
}
#: The distributions each peer contender needs (rows of a missing one are left out).
PEER_MODULES = {"slowapi": "slowapi", "fastapi-limiter": "fastapi_limiter"}
#: What every app needs (the ``bench`` extra brings them).
NEEDED = {"fastapi": "fastapi", "uvicorn": "uvicorn"}


def _version(dist: str, module: str) -> str | None:
    return importlib.metadata.version(dist) if importlib.util.find_spec(module) else None


def http_peers() -> dict[str, str | None]:
    """Each HTTP peer's installed version, or ``None`` when it is not importable."""
    return {dist: _version(dist, module) for dist, module in PEER_MODULES.items()}


def server_info(peers: dict[str, str | None]) -> dict[str, Any]:
    """The server stack the apps run on, and the peers' versions."""
    found: dict[str, Any] = {
        dist: _version(dist, dist) for dist in ("fastapi", "starlette", "uvicorn", "h11")
    }
    # uvicorn's "auto" picks httptools and uvloop when they are installed.
    found["http"] = "httptools" if importlib.util.find_spec("httptools") else "h11"
    found["loop"] = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    found["wrk"] = shutil.which("wrk")
    found["peers"] = peers
    return found


@dataclass(frozen=True)
class HttpSettings:
    """Sizes of the HTTP section."""

    seconds: int
    warmup_seconds: int
    repeats: int
    threads: int = 2
    connections: int = 32


QUICK_HTTP = HttpSettings(seconds=1, warmup_seconds=0, repeats=1)
FULL_HTTP = HttpSettings(seconds=4, warmup_seconds=2, repeats=5)


@dataclass
class Row:
    """One (contender, store, route) row and its measurements."""

    contender: str
    store: str
    path: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    unexpected: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.contender == "baseline":
            return LABELS["baseline"] if self.store == "memory" else f"{LABELS['baseline']}, one Redis PING"
        return f"{LABELS[self.contender]}, {self.store}"


def rows_to_measure(available: set[str]) -> list[Row]:
    """Every row: the baseline once per store, each limiter on each store, allowed and refused, and the
    middleware's unmatched route; peers only when importable."""
    rows = [Row("baseline", "memory", "allowed")]
    for store in STORES:
        if store != "memory":
            rows.append(Row("baseline", store, "allowed"))
        for contender in CONTENDERS[1:]:
            if contender in PEER_MODULES and contender not in available:
                continue
            rows += [Row(contender, store, "allowed"), Row(contender, store, "refused")]
            if contender == "limify-middleware":
                rows.append(Row(contender, store, "unmatched"))
    return rows


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as refused:
        return int(refused.code), refused.read()


class Server:
    """One app served by one uvicorn worker in a child process."""

    def __init__(self, contender: str, store: str, url: str, tag: str, logs: str) -> None:
        self.contender, self.store, self.port = contender, store, _free_port()
        self.log_path = os.path.join(logs, f"{contender}-{store}.log")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        command = [sys.executable, "-m", "benchmarks.http_apps", contender, store, url, tag, str(self.port)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.contender} on {self.store} exited at start: {self.log()}")
            try:
                if _get(self.port, "/_gc", 1.0)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.contender} on {self.store} did not answer in {timeout}s")
            time.sleep(0.05)

    def gc(self) -> dict[str, Any]:
        return dict(json.loads(_get(self.port, "/_gc")[1]))

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()[-2000:]

    def stop(self) -> None:
        stop_process(self.process)


def _wrk(port: int, path: str, seconds: int, settings: HttpSettings, script: str) -> dict[str, Any]:
    command = [
        "wrk", f"-t{settings.threads}", f"-c{settings.connections}", f"-d{seconds}s", "--latency",
        "-s", script, f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            return dict(json.loads(line[len(MARKER) :]))
    raise RuntimeError(
        f"wrk gave no summary (exit {done.returncode}): {done.stderr[-500:] or done.stdout[-500:]}"
    )


def _measure(row: Row, server: Server, settings: HttpSettings, script: str) -> dict[str, Any]:
    before = server.gc()
    found = _wrk(server.port, ROUTES[row.path], settings.seconds, settings, script)
    after = server.gc()
    requests = max(int(found["requests"]), 1)
    per_10k = 10_000 / requests
    sample = {
        "requests": found["requests"],
        "requests_per_s": found["requests"] / (found["duration_us"] / 1e6),
        "p50_ms": found["p50"] / 1000,
        "p90_ms": found["p90"] / 1000,
        "p99_ms": found["p99"] / 1000,
        "p999_ms": found["p999"] / 1000,
        "max_ms": found["max"] / 1000,
        "non_2xx_3xx": found["non_2xx_3xx"],
        "socket_errors": sum(found[name] for name in ("connect", "read", "write", "timeout")),
        "gc_collections_per_10k": [
            (a - b) * per_10k for a, b in zip(after["collections"], before["collections"])
        ],
        "gc_ms_per_10k": [(a - b) * per_10k for a, b in zip(after["ms"], before["ms"])],
        "gc_longest_ms": after["longest_ms"],
    }
    refused = row.path == "refused"
    if (refused and sample["non_2xx_3xx"] != found["requests"]) or (not refused and sample["non_2xx_3xx"]):
        row.unexpected += 1
    return sample


def measure_http(
    url: str, tag: str, settings: HttpSettings, available: set[str], step: Callable[[str], None]
) -> list[Row]:
    """Measure every row of :func:`rows_to_measure` (see the module docs)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk was not found on PATH: install it (apt-get install wrk, brew install wrk)")
    missing = [dist for dist, module in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise RuntimeError(
            f"the HTTP section needs {', '.join(missing)}: install the 'bench' extra (pip install '.[bench]')"
        )
    rows = rows_to_measure(available)
    logs = tempfile.mkdtemp(prefix="limify-bench-http-")
    script = os.path.join(logs, "summary.lua")
    with open(script, "w", encoding="utf-8") as lua:
        lua.write(_WRK_SCRIPT)
    servers: dict[tuple[str, str], Server] = {}
    try:
        for row in rows:
            if (row.contender, row.store) not in servers:
                servers[row.contender, row.store] = Server(row.contender, row.store, url, tag, logs)
        for server in servers.values():
            server.wait_ready()
        step(f"HTTP: {len(servers)} apps up; priming and warming {len(rows)} routes")
        for row in rows:
            server = servers[row.contender, row.store]
            _get(server.port, ROUTES[row.path])
            if settings.warmup_seconds:
                _wrk(server.port, ROUTES[row.path], settings.warmup_seconds, settings, script)
        for number in range(settings.repeats):
            step(f"HTTP: repeat {number + 1} of {settings.repeats}")
            shift = number % len(rows)
            for row in rows[shift:] + rows[:shift]:
                server = servers[row.contender, row.store]
                try:
                    row.samples.append(_measure(row, server, settings, script))
                except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
                    row.errors.append(f"{type(exc).__name__}: {exc}"[:300])
        for server in servers.values():
            if server.process.poll() is not None:
                rows_of = [
                    row for row in rows if (row.contender, row.store) == (server.contender, server.store)
                ]
                for row in rows_of:
                    row.errors.append(f"server exited: {server.log()[-300:]}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(logs, ignore_errors=True)
    return rows


def _median(samples: list[dict[str, Any]], name: str) -> float | None:
    values = [sample[name] for sample in samples if sample.get(name) is not None]
    return statistics.median(values) if values else None


def http_section(rows: list[Row], settings: HttpSettings, server_info: dict[str, Any]) -> dict[str, Any]:
    """The JSON of the HTTP section: one entry per row, medians over its repeats, and every sample."""
    out = []
    for row in rows:
        entry: dict[str, Any] = {
            "name": row.name,
            "contender": row.contender,
            "store": row.store,
            "path": row.path,
            "unexpected": row.unexpected,
            "errors": row.errors,
            "samples": row.samples,
        }
        for name in ("requests_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"):
            entry[name] = _median(row.samples, name)
        for name in ("gc_collections_per_10k", "gc_ms_per_10k"):
            columns = [sample[name] for sample in row.samples]
            entry[name] = [statistics.median(values) for values in zip(*columns)] if columns else None
        out.append(entry)
    return {
        "tool": f"wrk -t{settings.threads} -c{settings.connections} -d{settings.seconds}s --latency",
        "server": server_info,
        "seconds": settings.seconds,
        "warmup_seconds": settings.warmup_seconds,
        "repeats": settings.repeats,
        "rows": out,
    }
