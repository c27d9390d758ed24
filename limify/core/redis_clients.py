"""Redis clients from storage URLs: standalone, TLS, Unix socket, Sentinel, Cluster.

================================================  ===========================================
URL                                               client
================================================  ===========================================
``redis://[user:pass@]host:port/db``              ``redis.Redis`` (blocking pool)
``rediss://...`` / ``unix:///path.sock?db=0``     the same over TLS / a Unix socket
``redis+sentinel://host:port[,host:port]/name``   the master of ``name``, found through Sentinel
``redis+cluster://host:port[,host:port]``         ``redis.cluster.RedisCluster``
================================================  ===========================================

Each has an asyncio twin (``redis.asyncio``). Query parameters
``socket_timeout``, ``socket_connect_timeout`` and ``max_connections`` (and
``db`` for Sentinel) override :data:`CLIENT_DEFAULTS`.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "CLIENT_DEFAULTS",
    "SCHEMES",
    "RedisURL",
    "parse_redis_url",
    "check_url",
    "sync_client",
    "async_client",
    "close_sync",
    "close_async",
    "ClientPerLoop",
]

# Clients built here may own more connections than their own pool (a Sentinel
# client owns its connections to the sentinels); they are listed on the client
# under this attribute and closed with it by close_sync / close_async.
_OWNED = "_limify_owned_clients"

#: Options of the clients Limify builds from a URL. The standalone pool blocks
#: (up to ``timeout`` seconds) rather than fail when every connection is busy, and
#: no socket operation waits forever on a dead server.
CLIENT_DEFAULTS: dict[str, Any] = {
    "max_connections": 50,
    "timeout": 10.0,
    "socket_connect_timeout": 2.0,
    "socket_timeout": 2.0,
}

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
_FLOAT_OPTIONS = ("socket_timeout", "socket_connect_timeout", "timeout")
_INT_OPTIONS = ("max_connections", "db")


@dataclass(frozen=True)
class RedisURL:
    """A parsed Sentinel or Cluster URL (standalone URLs are left to redis-py)."""

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    service: str = ""
    username: str | None = None
    password: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _options(query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, values in parse_qs(query).items():
        try:
            if name in _FLOAT_OPTIONS:
                options[name] = float(values[-1])
            elif name in _INT_OPTIONS:
                options[name] = int(values[-1])
            else:
                raise ValueError(f"unknown option {name!r}")
        except ValueError as exc:
            raise ValueError(f"bad query parameter {name}={values[-1]!r} in storage URL: {exc}") from None
    return options


def parse_redis_url(url: str) -> RedisURL:
    """Parse a ``redis+sentinel://`` or ``redis+cluster://`` URL.

    Raises:
        ValueError: the URL lacks hosts, has a bad port, or (Sentinel) no service name.
    """
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
    credentials, _, hosts = netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(
                f"invalid storage URL {url!r}: expected host:port[,host:port...], got {host_port!r}"
            )
        nodes.append((host.strip("[]"), int(port)))
    service = unquote(path.strip("/"))
    if scheme == "redis+sentinel" and not service:
        raise ValueError(
            f"invalid storage URL {url!r}: name the Sentinel service, e.g. {scheme}://host:26379/mymaster"
        )
    return RedisURL(
        scheme=scheme,
        nodes=tuple(nodes),
        service=service,
        username=unquote(username) or None,
        password=unquote(password) or None,
        options=_options(query),
    )


def check_url(url: str) -> str:
    """Validate a Redis storage URL without connecting; return its scheme."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported Redis URL {url!r}: expected one of {', '.join(SCHEMES)}")
    if scheme in ("redis+sentinel", "redis+cluster"):
        parse_redis_url(url)
    return scheme


def _auth(parsed: RedisURL) -> dict[str, Any]:
    auth = {}
    if parsed.username:
        auth["username"] = parsed.username
    if parsed.password:
        auth["password"] = parsed.password
    return auth


def sync_client(url: str, **overrides: Any) -> Any:
    """A synchronous client for ``url`` (see the module docs)."""
    import redis
    import redis.cluster
    import redis.sentinel

    scheme = check_url(url)
    if scheme not in ("redis+sentinel", "redis+cluster"):
        pool = redis.BlockingConnectionPool.from_url(url, **{**CLIENT_DEFAULTS, **overrides})
        return redis.Redis.from_pool(pool)
    parsed = parse_redis_url(url)
    options = {**CLIENT_DEFAULTS, **parsed.options, **overrides, **_auth(parsed)}
    options.pop("timeout")
    if scheme == "redis+cluster":
        options.pop("db", None)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in parsed.nodes]  # type: ignore[no-untyped-call]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **options)
    timeouts = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = redis.sentinel.Sentinel(list(parsed.nodes), sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
    client = sentinel.master_for(parsed.service, **options)  # type: ignore[no-untyped-call]
    setattr(client, _OWNED, list(sentinel.sentinels))
    return client


def async_client(url: str, **overrides: Any) -> Any:
    """A ``redis.asyncio`` client for ``url``; it belongs to the running event loop."""
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.sentinel

    scheme = check_url(url)
    if scheme not in ("redis+sentinel", "redis+cluster"):
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, **{**CLIENT_DEFAULTS, **overrides})
        return redis.asyncio.Redis.from_pool(pool)
    parsed = parse_redis_url(url)
    options = {**CLIENT_DEFAULTS, **parsed.options, **overrides, **_auth(parsed)}
    options.pop("timeout")
    if scheme == "redis+cluster":
        options.pop("db", None)
        # redis.asyncio's cluster client re-reads the whole topology after every
        # few MOVED replies by default, and that refresh races with the tasks using
        # the connections it recycles: under concurrent load some calls then fail
        # with AttributeError, or get ConnectionError after the server ran the
        # script, and the client's own retry runs it twice (a call counted twice).
        # A MOVED reply names the slot's new owner, which the client records
        # without a refresh; a node that fails still triggers one.
        options.setdefault("reinitialize_steps", 0)
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in parsed.nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **options)
    timeouts = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = redis.asyncio.sentinel.Sentinel(list(parsed.nodes), sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
    client = sentinel.master_for(parsed.service, **options)
    setattr(client, _OWNED, list(sentinel.sentinels))
    return client


def close_sync(client: Any) -> None:
    """Close a client built by :func:`sync_client` and whatever it owns."""
    client.close()
    for owned in getattr(client, _OWNED, ()):
        owned.close()


async def close_async(client: Any) -> None:
    """Close a client built by :func:`async_client` and whatever it owns."""
    try:
        await client.aclose()
    finally:
        for owned in getattr(client, _OWNED, ()):
            await owned.aclose()


class ClientPerLoop:
    """A redis.asyncio client per event loop, for adapters built from a URL.

    An asyncio client's connections belong to the loop that opened them; an app
    (or a test suite) that runs several loops needs one client per loop. Each
    client is closed while its loop shuts down: an async generator parked in the
    loop is finalised by ``loop.shutdown_asyncgens()`` (``asyncio.run`` and
    ``anyio.run`` call it), and its ``finally`` closes the client.
    """

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        check_url(url)
        self.url = url
        self._options = options
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Redis async storage needs a running asyncio event loop (redis.asyncio "
                "does not run on trio); use the in-memory storage under trio"
            ) from None

    def current(self) -> Any:
        """This loop's client, or None if it has none yet (then call :meth:`open`)."""
        entry = self._clients.get(self._loop())
        return None if entry is None else entry[0]

    async def open(self) -> Any:
        """Create this loop's client and arrange for it to close with the loop."""
        loop = self._loop()
        entry = self._clients.get(loop)
        if entry is None:
            client = async_client(self.url, **self._options)
            closer = self._close_at_loop_shutdown(client, loop)
            await closer.__anext__()
            entry = self._clients[loop] = (client, closer)
        return entry[0]

    async def _close_at_loop_shutdown(self, client: Any, loop: asyncio.AbstractEventLoop) -> Any:
        try:
            yield
        finally:
            # Forget the loop's client before closing it, so nothing of it outlives the loop.
            self._clients.pop(loop, None)
            await close_async(client)

    def __repr__(self) -> str:
        return f"<redis.asyncio clients for {self.url!r}>"
