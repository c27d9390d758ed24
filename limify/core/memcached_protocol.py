"""A minimal memcached meta-protocol client: the three commands the Memcached store needs.

``mg <item> v c`` reads an item's value and CAS token in one round trip;
``ms <item> <size> T<ttl> C<cas>`` stores it only if unchanged (``ME``: only if
absent); ``md <item> C<cas>`` deletes it only if unchanged. The encoding and
parsing are written once (:func:`get_command`, :func:`set_command`,
:func:`delete_command`, :func:`parse_header`), and driven by two thin shells: a
blocking socket pool (:class:`SyncConnections`) and anyio streams
(:class:`AsyncConnections`, asyncio or trio). Why not a library: none maintained
speaks the meta protocol from both sync and async code with the same semantics
and timeouts (meta-memcache is sync only, emcache asyncio only and on the
classic ``gets``/``cas`` pair), and the store needs only these three commands.

Any socket error, timeout or protocol surprise closes the connection and raises
:class:`ConnectionLost` (an :class:`OSError`); the adapters turn it into
:class:`limify.StorageError`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from limify.core.forksafe import fork_safe_lock

__all__ = [
    "ConnectionLost", "MemcachedOptions", "Reply", "parse_url", "check_url", "get_command", "set_command",
    "delete_command", "parse_header", "SyncConnections", "AsyncConnections", "DEFAULT_PORT",
]  # fmt: skip

DEFAULT_PORT = 11211
#: Largest relative TTL memcached takes; above it a TTL reads as a Unix time.
MAX_RELATIVE_TTL = 30 * 24 * 3600
_MAX_LINE = 1024


class ConnectionLost(OSError):
    """The server could not be reached, or a reply did not arrive whole."""


class MemcachedOptions(NamedTuple):
    """A ``memcached://host:port`` URL and the store's options."""

    host: str
    port: int
    timeout: float
    pool_max: int
    attempts: int


def parse_url(url: str) -> MemcachedOptions:
    """Split ``memcached://host:port?timeout=1&pool_max=10&attempts=50`` (docs/memcached.md)."""
    if not isinstance(url, str):
        raise TypeError(f"storage URL must be a str, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme.lower() != "memcached" or not parts.hostname:
        raise ValueError(f"unsupported Memcached URL {url!r}: expected memcached://host:port")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"storage URL {url!r}: the port must be a number from 1 to 65535") from None
    values = {"timeout": "1", "pool_max": "10", "attempts": "50"}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in values:
            raise ValueError(
                f"storage URL {url!r}: unknown option {name!r}; expected one of {', '.join(values)}"
            )
        values[name] = value
    try:
        timeout, pool_max, attempts = (
            float(values["timeout"]),
            int(values["pool_max"]),
            int(values["attempts"]),
        )
    except ValueError:
        raise ValueError(
            f"storage URL {url!r}: timeout must be seconds, pool_max and attempts ints"
        ) from None
    if not timeout > 0 or pool_max < 1 or attempts < 1:
        raise ValueError(f"storage URL {url!r}: timeout must be > 0, pool_max and attempts >= 1")
    return MemcachedOptions(parts.hostname, port, timeout, pool_max, attempts)


def check_url(url: str) -> str:
    """Validate a Memcached storage URL without connecting; return its scheme."""
    parse_url(url)
    return "memcached"


class Reply(NamedTuple):
    """One reply header: its code (``VA``, ``EN``, ``HD``, ``NS``, ``EX``, ``NF``), value size and CAS token."""

    code: bytes
    size: int
    cas: int


def get_command(item: bytes) -> bytes:
    """``mg``: the value and the CAS token of ``item``."""
    return b"mg " + item + b" v c\r\n"


def _ttl(ttl_s: int) -> int:
    # Above 30 days memcached would read the TTL as a Unix time on its own clock: keep the
    # item without one instead (the state's own expiry still decides; eviction may drop it).
    return ttl_s if 0 < ttl_s <= MAX_RELATIVE_TTL else 0


def set_command(item: bytes, value: bytes, ttl_s: int, cas: int | None) -> bytes:
    """``ms``: store ``value`` if the item's CAS is still ``cas`` (``None``: only if absent)."""
    guard = b" ME" if cas is None else b" C%d" % cas
    return b"ms %s %d T%d%s\r\n%s\r\n" % (item, len(value), _ttl(ttl_s), guard, value)


def delete_command(item: bytes, cas: int | None) -> bytes:
    """``md``: delete the item if its CAS is still ``cas`` (``None``: whatever it holds)."""
    return b"md " + item + (b"" if cas is None else b" C%d" % cas) + b"\r\n"


def parse_header(line: bytes) -> Reply:
    """The reply header ``line`` (without CRLF)."""
    words = line.split()
    if not words:
        raise ConnectionLost(f"memcached sent an empty reply line: {line!r}")
    code = words[0]
    if code == b"VA":
        cas = next((int(word[1:]) for word in words[2:] if word.startswith(b"c")), 0)
        return Reply(code, int(words[1]), cas)
    if code in (b"EN", b"HD", b"NS", b"EX", b"NF"):
        return Reply(code, 0, 0)
    raise ConnectionLost(f"memcached answered {line[:200]!r}")


class _SyncConnection:
    """One blocking socket and its read buffer."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionLost("memcached closed the connection")
        self.buffer += chunk

    def request(self, command: bytes) -> tuple[Reply, bytes]:
        """Send ``command``; its reply header and value."""
        self.sock.sendall(command)
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > _MAX_LINE:
                raise ConnectionLost("memcached sent an overlong reply line")
            self._fill()
        reply = parse_header(bytes(self.buffer[:end]))
        del self.buffer[: end + 2]
        if reply.code != b"VA":
            return reply, b""
        while len(self.buffer) < reply.size + 2:
            self._fill()
        value = bytes(self.buffer[: reply.size])
        del self.buffer[: reply.size + 2]
        return reply, value


class SyncConnections:
    """A pool of blocking connections to one server (at most ``pool_max`` kept idle)."""

    def __init__(self, host: str, port: int, *, timeout: float = 1.0, pool_max: int = 10) -> None:
        self.host, self.port, self.timeout, self.pool_max = host, port, timeout, pool_max
        self._idle: list[_SyncConnection] = []
        self._lock = fork_safe_lock(self)
        self._pid = os.getpid()

    @contextmanager
    def connection(self) -> Iterator[_SyncConnection]:
        """A connection for a few requests; closed (not reused) if anything goes wrong."""
        if self._pid != os.getpid():  # a forked child: the parent's sockets stay the parent's
            self._pid = os.getpid()
            self.discard_idle()  # (closing a child's copy leaves the parent's connection open)
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = _SyncConnection(self.host, self.port, self.timeout)
            yield conn
        except BaseException as error:
            if conn is not None:
                conn.sock.close()
            if isinstance(error, OSError) and not isinstance(error, ConnectionLost):
                raise ConnectionLost(f"memcached at {self.host}:{self.port}: {error}") from error
            raise
        with self._lock:
            if len(self._idle) < self.pool_max:
                self._idle.append(conn)
                return
        conn.sock.close()

    def discard_idle(self) -> None:
        """Close every idle connection (after a failure: they may all be from before a restart)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.sock.close()

    def close(self) -> None:
        """Close the idle connections."""
        self.discard_idle()


class _AsyncConnection:
    """One anyio stream and its buffered reader."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    async def request(self, command: bytes) -> tuple[Reply, bytes]:
        """Send ``command``; its reply header and value."""
        await self.stream.send(command)
        reply = parse_header(await self.reader.receive_until(b"\r\n", _MAX_LINE))
        if reply.code != b"VA":
            return reply, b""
        value = await self.reader.receive_exactly(reply.size + 2)
        return reply, value[:-2]


class AsyncConnections:
    """A pool of anyio connections to one server, for one event loop."""

    def __init__(self, host: str, port: int, *, timeout: float = 1.0, pool_max: int = 10) -> None:
        self.host, self.port, self.timeout, self.pool_max = host, port, timeout, pool_max
        self._idle: list[_AsyncConnection] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_AsyncConnection]:
        """A connection for a few requests; closed (not reused) if anything goes wrong or is cancelled."""
        conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                with anyio.fail_after(self.timeout):
                    conn = _AsyncConnection(await anyio.connect_tcp(self.host, self.port))
            yield conn
        except BaseException as error:
            if conn is not None:
                await anyio.aclose_forcefully(conn.stream)
            if isinstance(error, (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError,
                                  anyio.IncompleteRead, anyio.DelimiterNotFound)) and not isinstance(
                error, ConnectionLost
            ):  # fmt: skip
                raise ConnectionLost(f"memcached at {self.host}:{self.port}: {error!r}") from error
            raise
        if len(self._idle) < self.pool_max:
            self._idle.append(conn)
        else:
            await conn.stream.aclose()

    async def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await anyio.aclose_forcefully(conn.stream)

    async def discard_idle(self) -> None:
        """Close every idle connection (after a failure)."""
        await self.close()
