"""Redis clients from storage URLs: standalone, TLS, Unix socket, Sentinel, Cluster.

================================================  ===========================================
URL                                               client
================================================  ===========================================
``redis://[user:pass@]host:port/db``              ``redis.Redis`` (blocking pool)
``rediss://...`` / ``unix:///path.sock?db=0``     the same over TLS / a Unix socket
``redis+sentinel://host:port[,host:port]/name``   the master of ``name``, found through Sentinel
``redis+cluster://host:port[,host:port]``         ``redis.cluster.RedisCluster``
================================================  ===========================================

Each has an asyncio twin (``redis.asyncio``). The schemes other libraries write are
aliases: ``valkey://`` and ``valkeys://`` for ``redis://`` and ``rediss://`` (Valkey
speaks the same protocol), ``redis+unix://`` for ``unix://``, ``valkey+sentinel://``
and ``valkey+cluster://`` for the Redis ones.

Query parameters are redis-py's connection options, on every scheme: the ones
``redis.from_url`` reads (``socket_timeout``, ``socket_connect_timeout``,
``health_check_interval``, ``protocol``, ``ssl_check_hostname`` ...), the TLS
options (``ssl=true``, ``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile`` ...), ``client_name``, and the pool's ``max_connections`` and
``timeout``; they override :data:`CLIENT_DEFAULTS`. ``ssl=true`` turns TLS on (a
``redis://`` URL becomes ``rediss://``); on Sentinel URLs the TLS options apply to
the sentinels too. Any other name is refused when the URL is configured.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from limify.core.per_loop import PerLoop

__all__ = [
    "CLIENT_DEFAULTS",
    "SCHEMES",
    "ALIASES",
    "canonical",
    "url_options",
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

#: Schemes other libraries write, and the scheme each stands for.
ALIASES = {
    "valkey": "redis",
    "valkeys": "rediss",
    "redis+unix": "unix",
    "valkey+sentinel": "redis+sentinel",
    "valkey+cluster": "redis+cluster",
}
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", *ALIASES)
#: Query options read as strings (redis-py's typed ones come from ``redis.connection``).
_STRING_OPTIONS = (
    "client_name", "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path",
    "ssl_password", "ssl_ciphers", "encoding", "encoding_errors",
)  # fmt: skip
_BOOL_OPTIONS = ("ssl", "ssl_validate_ocsp", "ssl_validate_ocsp_stapled")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _to_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered not in _TRUE + _FALSE:
        raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")
    return lowered in _TRUE


def _parsers() -> dict[str, Any]:
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    parsers: dict[str, Any] = dict(URL_QUERY_ARGUMENT_PARSERS)
    parsers.update({name: str for name in _STRING_OPTIONS})
    parsers.update({name: _to_bool for name in _BOOL_OPTIONS})
    # protocol (RESP 2 or 3) is a client option of every supported redis-py; only newer ones parse it.
    parsers.update(timeout=float, max_connections=int, db=int, protocol=int)
    return parsers


def canonical(url: str) -> str:
    """``url`` with an alias scheme (``valkey://``, ``redis+unix://`` ...) replaced by the Redis one."""
    scheme, sep, rest = url.partition("://")
    found = ALIASES.get(scheme.lower())
    return f"{found}{sep}{rest}" if sep and found else url


@dataclass(frozen=True)
class RedisURL:
    """A parsed Sentinel or Cluster URL (standalone URLs are left to redis-py)."""

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    service: str = ""
    username: str | None = None
    password: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def url_options(query: str) -> dict[str, Any]:
    """The client options in a storage URL's query (see the module docs), typed.

    Raises:
        ValueError: an option redis-py does not take from URLs, or a bad value; the message names it.
    """
    parsers = _parsers()
    options: dict[str, Any] = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        parser = parsers.get(name)
        if parser is None:
            known = ", ".join(sorted(parsers))
            raise ValueError(f"unknown option {name!r} in storage URL; redis-py's URL options are {known}")
        try:
            options[name] = parser(values[-1])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad query parameter {name}={values[-1]!r} in storage URL: {exc}") from None
    return options


def _standalone(url: str) -> str:
    """A standalone URL as redis-py reads it: its options checked, ``ssl=true`` as ``rediss://``."""
    base, _, query = url.partition("?")
    options = url_options(query)
    if options.get("ssl") and base.startswith("redis://"):
        base = "rediss://" + base[len("redis://") :]
    kept = [(name, value) for name, value in parse_qsl(query, keep_blank_values=True) if name != "ssl"]
    return f"{base}?{urlencode(kept)}" if kept else base


def parse_redis_url(url: str) -> RedisURL:
    """Parse a ``redis+sentinel://`` or ``redis+cluster://`` URL (or their ``valkey+`` aliases).

    Raises:
        ValueError: the URL lacks hosts, has a bad port, (Sentinel) no service name, or a bad option.
    """
    scheme, _, rest = canonical(url).partition("://")
    rest, _, query = rest.partition("?")  # first: option values may hold slashes (file paths)
    netloc, _, path = rest.partition("/")
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
        options=url_options(query),
    )


def check_url(url: str) -> str:
    """Validate a Redis storage URL without connecting; return its (canonical) scheme."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported Redis URL {url!r}: expected one of {', '.join(SCHEMES)}")
    scheme = ALIASES.get(scheme, scheme)
    if scheme in ("redis+sentinel", "redis+cluster"):
        parsed = parse_redis_url(url)
        if scheme == "redis+cluster":
            _check_cluster_options(url, parsed.options)
    else:
        _standalone(canonical(url))
    return scheme


def _check_cluster_options(url: str, options: dict[str, Any]) -> None:
    """Refuse options the asyncio cluster client lacks: one URL serves sync and async code."""
    import inspect

    import redis.asyncio.cluster

    taken = set(inspect.signature(redis.asyncio.cluster.RedisCluster.__init__).parameters) | {"timeout"}
    missing = sorted(set(options) - taken)
    if missing:
        raise ValueError(
            f"storage URL {url!r}: redis-py's asyncio cluster client takes no {', '.join(missing)}"
        )


def _sentinel_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options of the connections to the sentinels themselves: timeouts and TLS."""
    kept = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")}
    kept.update((name, value) for name, value in options.items() if name.startswith("ssl"))
    return kept


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
        standalone = _standalone(canonical(url))
        pool = redis.BlockingConnectionPool.from_url(standalone, **{**CLIENT_DEFAULTS, **overrides})
        return redis.Redis.from_pool(pool)
    parsed = parse_redis_url(url)
    options = {**CLIENT_DEFAULTS, **parsed.options, **overrides, **_auth(parsed)}
    options.pop("timeout")
    if scheme == "redis+cluster":
        options.pop("db", None)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in parsed.nodes]  # type: ignore[no-untyped-call]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **options)
    sentinel = redis.sentinel.Sentinel(list(parsed.nodes), sentinel_kwargs=_sentinel_options(options))  # type: ignore[no-untyped-call]
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
        standalone = _standalone(canonical(url))
        pool = redis.asyncio.BlockingConnectionPool.from_url(standalone, **{**CLIENT_DEFAULTS, **overrides})
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
    sentinel = redis.asyncio.sentinel.Sentinel(list(parsed.nodes), sentinel_kwargs=_sentinel_options(options))  # type: ignore[no-untyped-call]
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
        self._clients: PerLoop[Any] = PerLoop(
            self._new_client, close_async, loop_of=self._loop, entries=weakref.WeakKeyDictionary()
        )
        # The per-loop table's own methods, not wrappers around them: ``current()`` runs on
        # every async check.
        #: ``current()``: this loop's client, or None if it has none yet (then ``await open()``).
        self.current: Callable[[], Any] = self._clients.current
        #: ``await open()``: this loop's client, created at first use to close with the loop.
        self.open: Callable[[], Awaitable[Any]] = self._clients.get

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Redis async storage needs a running asyncio event loop (redis.asyncio "
                "does not run on trio); use the in-memory storage under trio"
            ) from None

    async def _new_client(self) -> Any:
        return async_client(self.url, **self._options)

    def __repr__(self) -> str:
        return f"<redis.asyncio clients for {self.url!r}>"
