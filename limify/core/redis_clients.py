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

import contextvars
import copy
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from limify.core.forksafe import fork_safe_lock

__all__ = [
    "CLIENT_DEFAULTS",
    "EVICTING_POLICIES",
    "EvictionCheck",
    "ScriptClient",
    "sync_sender",
    "async_sender",
    "is_reply_error",
    "client_error_names",
    "SCHEMES",
    "RedisURL",
    "parse_redis_url",
    "check_url",
    "sync_client",
    "async_client",
    "close_sync",
    "close_async",
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


# ---------------------------------------------------------------------------
# Sending scripts at most once
# ---------------------------------------------------------------------------
#
# redis-py re-sends a command whose connection failed, as often as the client's
# ``Retry`` allows (redis-py 8 allows 10 by default, with backoff): its
# ``execute_command`` and its pipelines run on ``connection.retry``. For a script
# whose reply was lost, that runs the script twice: one call is counted twice, a
# refund gives its cost back twice. And every attempt waits for its own timeout.
#
# So Limify sends its scripts itself, on a connection it takes from the client's
# own pool, and never sends them again: a failure after sending surfaces as is
# (the adapter turns it into StorageError, for the failure policy). A connection
# found dead before anything was sent on it, such as one the server closed while it
# sat idle, is replaced first, which is safe. While Limify holds a connection its
# retry policy is gated off (see _Gate), so that reconnecting does not retry either;
# everyone else using the client keeps the policy it configured. Cluster clients
# already connect without retries; they are sent each script on the node that owns
# its slot (``target_nodes``), which turns off their own re-sending.

log = logging.getLogger("limify")

#: True while Limify sends on a connection, in this thread or task.
_SENDING: contextvars.ContextVar[bool] = contextvars.ContextVar("limify_sending", default=False)


def client_error_names(error: BaseException) -> set[str]:
    """The names of ``error``'s classes that come from redis-py or valkey-py.

    Errors are recognised by class name so that redis-py and valkey-py (its API-
    compatible fork, with its own exception classes) are handled alike.
    """
    return {
        cls.__name__ for cls in type(error).__mro__ if cls.__module__.split(".")[0] in ("redis", "valkey")
    }


def is_reply_error(error: BaseException) -> bool:
    """True when ``error`` is the server's error reply (the connection is still in step)."""
    names = client_error_names(error)
    return "ResponseError" in names and "ConnectionError" not in names


class _Gate:
    """A connection's retry policy, unchanged for everyone but Limify, off for Limify.

    Wraps the ``retry`` object redis-py keeps on each connection. Outside Limify's
    own sends every call goes to the wrapped policy, so the client's other commands
    behave exactly as configured; during them (``_SENDING``), ``do`` runs once.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy protocols): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Gate:
        # Each new connection gets a copy of the pool's policy: keep the gate on it.
        return type(self)(copy.deepcopy(self.inner, memo))

    def __copy__(self) -> _Gate:
        return type(self)(copy.copy(self.inner))

    def _handles(self, error: Exception) -> bool:
        """Whether the wrapped policy would call its failure callback for ``error``."""
        return isinstance(error, tuple(getattr(self.inner, "_supported_errors", ())))

    @staticmethod
    def _with_count(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        return bool(kwargs.get("with_failure_count", args[1] if len(args) > 1 else False))

    def __repr__(self) -> str:
        return f"<limify gate on {self.inner!r}>"


class _SyncGate(_Gate):
    __slots__ = ()

    def call_with_retry(
        self, do: Callable[[], Any], fail: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        if not _SENDING.get():
            return self.inner.call_with_retry(do, fail, *args, **kwargs)
        try:
            return do()
        except Exception as error:
            if self._handles(error):
                fail(error, 1) if self._with_count(args, kwargs) else fail(error)
            raise


class _AsyncGate(_Gate):
    __slots__ = ()

    async def call_with_retry(
        self, do: Callable[[], Awaitable[Any]], fail: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        if not _SENDING.get():
            return await self.inner.call_with_retry(do, fail, *args, **kwargs)
        try:
            return await do()
        except Exception as error:
            if self._handles(error):
                result = fail(error, 1) if self._with_count(args, kwargs) else fail(error)
                if inspect.isawaitable(result):
                    await result
            raise


def _gate_retry(holder: Any, gate: type[_Gate]) -> None:
    """Put ``gate`` around the ``retry`` of a connection, or of a pool's connection options."""
    if isinstance(holder, dict):
        retry = holder.get("retry")
        if retry is not None and not isinstance(retry, _Gate):
            holder["retry"] = gate(retry)
        return
    retry = getattr(holder, "retry", None)
    if retry is not None and not isinstance(retry, _Gate):
        holder.retry = gate(retry)


def _checkout_args(pool: Any) -> tuple[str, ...]:
    """What ``pool.get_connection`` needs: a command name for valkey-py and redis-py < 5.3, else nothing."""
    try:
        parameters = list(inspect.signature(pool.get_connection).parameters.values())
    except (TypeError, ValueError):
        return ("EVALSHA",)
    if parameters and parameters[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        if parameters[0].default is inspect.Parameter.empty:
            return ("EVALSHA",)
    return ()


def _server_of(connection: Any) -> str:
    path = getattr(connection, "path", None)
    if isinstance(path, str) and path:
        return f"unix:{path}"
    return f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


#: Prefixes of the ``maxmemory-policy`` values under which Redis evicts keys. Every
#: Limify key has a TTL, so the ``volatile-*`` policies evict them as well.
EVICTING_POLICIES = ("allkeys-", "volatile-")


class EvictionCheck:
    """Reads each server's ``maxmemory-policy`` once and warns if it can evict limiter keys.

    One per adapter. An evicted key is a limit starting afresh: under
    ``allkeys-lru`` with other data churning, a 10/hour limit admitted 49 or 50
    calls of 50. A server that refuses ``CONFIG GET`` (managed services often rename or
    disable it) is left alone; that is logged at debug level only.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = fork_safe_lock(self)

    def claim(self, server: str) -> bool:
        """True for the first caller to reach ``server``: it reads the policy."""
        if server in self._seen:
            return False
        with self._lock:
            if server in self._seen:
                return False
            self._seen.add(server)
            return True

    def forget(self, server: str) -> None:
        """The read failed on the way (connection lost): the next call reads again."""
        with self._lock:
            self._seen.discard(server)

    def refused(self, server: str, error: BaseException) -> None:
        log.debug("limify: could not read the maxmemory-policy of Redis at %s: %s", server, error)

    def report(self, server: str, reply: Any) -> None:
        """Warn, once, if ``reply`` (CONFIG GET maxmemory*) shows an evicting policy."""
        if (
            isinstance(reply, dict)
            and len(reply) == 1
            and isinstance(next(iter(reply.values())), (dict, list))
        ):
            reply = next(iter(reply.values()))  # a cluster client's {node: reply}
        if isinstance(reply, dict):
            settings = {_text(k): _text(v) for k, v in reply.items()}
        elif isinstance(reply, (list, tuple)):
            settings = {_text(k): _text(v) for k, v in zip(reply[::2], reply[1::2])}
        else:
            return
        policy = settings.get("maxmemory-policy", "")
        if policy.startswith(EVICTING_POLICIES):
            which = (
                "keys with a TTL, as every Limify key has" if policy.startswith("volatile-") else "any key"
            )
            log.warning(
                "limify: Redis at %s has maxmemory-policy %s (maxmemory %s): once its memory is full it "
                "evicts %s, and an evicted limiter key starts its limit afresh. Use maxmemory-policy "
                "noeviction on the instance holding the limits, or an instance of their own (see "
                "'Memory and eviction' in Limify's README).",
                server,
                policy,
                settings.get("maxmemory", "?"),
                which,
            )


_CONFIG_GET = ("CONFIG", "GET", "maxmemory*")


def _reply_or_raise(replies: list[Any]) -> Any:
    reply = replies[0]
    if isinstance(reply, Exception):
        raise reply
    return reply


class SyncSender:
    """Sends commands once on a ``redis.Redis``-like client's pool (standalone or Sentinel)."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = weakref.ref(client)
        self._evictions = evictions
        self._checkout_args = _checkout_args(client.connection_pool)

    def call(self, *args: Any) -> Any:
        """Send one command once; its error reply is raised."""
        return _reply_or_raise(self.run([args]))

    def load(self, script: str) -> None:
        """SCRIPT LOAD ``script``."""
        self.call("SCRIPT", "LOAD", script)

    def delete(self, keys: Sequence[str]) -> None:
        """DEL ``keys``."""
        self.call("DEL", *keys)

    def run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one round trip, once; error replies come back in place."""
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        token = _SENDING.set(True)
        try:
            connection, release, pooled = self._checkout(client)
            try:
                return self._exchange(client, connection, commands, pooled)
            finally:
                release()
        finally:
            _SENDING.reset(token)

    def _checkout(self, client: Any) -> tuple[Any, Callable[[], Any], bool]:
        single = getattr(client, "connection", None)
        if single is not None:  # a single_connection_client
            lock = getattr(client, "single_connection_lock", None)
            if lock is None:
                return single, lambda: None, False
            lock.acquire()
            return single, lock.release, False
        pool = client.connection_pool
        _gate_retry(pool.connection_kwargs, _SyncGate)
        # The pool hands out connections checked for EOF and unread data.
        connection = pool.get_connection(*self._checkout_args)
        return connection, lambda: pool.release(connection), True

    def _exchange(
        self, client: Any, connection: Any, commands: Sequence[tuple[Any, ...]], checked: bool
    ) -> list[Any]:
        try:
            _gate_retry(connection, _SyncGate)
            if not checked and _is_stale_sync(connection):
                # Closed by the server while idle: nothing was sent on it yet.
                connection.disconnect()
                connection.connect()
            server = _server_of(connection)
            if self._evictions.claim(server):
                self._check_eviction(connection, server)
            if len(commands) == 1:
                connection.send_command(*commands[0])
            else:
                connection.send_packed_command(connection.pack_commands(commands))
            replies = []
            for args in commands:
                try:
                    replies.append(client.parse_response(connection, args[0]))
                except Exception as error:
                    if not is_reply_error(error):
                        raise
                    replies.append(error)
            return replies
        except BaseException as error:
            if not is_reply_error(error):
                _quietly(connection.disconnect)
            raise

    def _check_eviction(self, connection: Any, server: str) -> None:
        try:
            connection.send_command(*_CONFIG_GET)
            reply = connection.read_response()
        except BaseException as error:
            if not is_reply_error(error):
                self._evictions.forget(server)
                raise
            self._evictions.refused(server, error)
        else:
            self._evictions.report(server, reply)


class AsyncSender:
    """Awaitable twin of :class:`SyncSender`, on a ``redis.asyncio.Redis``-like client."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = weakref.ref(client)
        self._evictions = evictions
        self._checkout_args = _checkout_args(client.connection_pool)

    async def call(self, *args: Any) -> Any:
        """Send one command once; its error reply is raised."""
        return _reply_or_raise(await self.run([args]))

    async def load(self, script: str) -> None:
        """SCRIPT LOAD ``script``."""
        await self.call("SCRIPT", "LOAD", script)

    async def delete(self, keys: Sequence[str]) -> None:
        """DEL ``keys``."""
        await self.call("DEL", *keys)

    async def run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one round trip, once; error replies come back in place."""
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        token = _SENDING.set(True)
        try:
            connection, release = await self._checkout(client)
            try:
                return await self._exchange(client, connection, commands)
            finally:
                await release()
        finally:
            _SENDING.reset(token)

    async def _checkout(self, client: Any) -> tuple[Any, Callable[[], Awaitable[Any]]]:
        if getattr(client, "single_connection_client", False):
            await client.initialize()
            single = client.connection
            lock = getattr(client, "_single_conn_lock", None)
            if lock is None:
                return single, _nothing
            await lock.acquire()

            async def unlock() -> None:
                lock.release()

            return single, unlock
        pool = client.connection_pool
        _gate_retry(pool.connection_kwargs, _AsyncGate)
        connection = await pool.get_connection(*self._checkout_args)
        return connection, lambda: pool.release(connection)

    async def _exchange(self, client: Any, connection: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        try:
            _gate_retry(connection, _AsyncGate)
            if await _is_stale(connection):
                # Closed by the server while idle (its `timeout`), or left with
                # unread data: nothing was sent on it yet, so a fresh one is safe.
                await connection.disconnect(nowait=True)
                await connection.connect()
            server = _server_of(connection)
            if self._evictions.claim(server):
                await self._check_eviction(connection, server)
            if len(commands) == 1:
                await connection.send_command(*commands[0])
            else:
                await connection.send_packed_command(connection.pack_commands(commands))
            replies = []
            for args in commands:
                try:
                    replies.append(await client.parse_response(connection, args[0]))
                except Exception as error:
                    if not is_reply_error(error):
                        raise
                    replies.append(error)
            return replies
        except BaseException as error:
            if not is_reply_error(error):
                await _quietly_async(connection.disconnect(nowait=True))
            raise

    async def _check_eviction(self, connection: Any, server: str) -> None:
        try:
            await connection.send_command(*_CONFIG_GET)
            reply = await connection.read_response()
        except BaseException as error:
            if not is_reply_error(error):
                self._evictions.forget(server)
                raise
            self._evictions.refused(server, error)
        else:
            self._evictions.report(server, reply)


def _is_stale_sync(connection: Any) -> bool:
    """True when a connected socket is at EOF or holds unread data (redis-py raises on EOF)."""
    if getattr(connection, "_sock", True) is None:
        return False  # not connected: it connects when used
    try:
        return bool(connection.can_read())
    except Exception as error:
        if client_error_names(error) & {"ConnectionError", "TimeoutError"} or isinstance(error, OSError):
            return True
        raise


async def _nothing() -> None:
    return None


async def _is_stale(connection: Any) -> bool:
    """True when a pooled asyncio connection is at EOF or holds unread data.

    redis.asyncio's pools check this on checkout, but redis-py 8 skips the check
    when RESP3 maintenance notifications are on (the default), so a connection the
    server closed while idle is handed out as if alive.
    """
    probe = getattr(connection, "can_read", None)
    if probe is None or not inspect.iscoroutinefunction(probe):
        probe = connection.can_read_destructive
    try:
        return bool(await probe())
    except Exception as error:
        if client_error_names(error) & {"ConnectionError", "TimeoutError"} or isinstance(error, OSError):
            return True
        raise


async def _drop_stale(node: Any) -> None:
    """Disconnect the idle connection a redis.asyncio cluster node hands out next, if the server closed it.

    Unlike the pools of standalone clients, a cluster node hands out its idle
    connections unchecked, the oldest first (``_free``, redis.asyncio's deque of
    them; without it there is nothing to do). A disconnected one reconnects when
    used, which is safe: nothing was sent on it.
    """
    free = getattr(node, "_free", None)
    if free:
        connection = free[0]
        if getattr(connection, "is_connected", False) and await _is_stale(connection):
            await _quietly_async(connection.disconnect(nowait=True))


def _quietly(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception:  # the original error is what matters
        pass


async def _quietly_async(action: Awaitable[Any]) -> None:
    try:
        await action
    except Exception:
        pass


def _cluster_target(client: Any, args: tuple[Any, ...]) -> Any:
    """The node owning a script's first key (EVALSHA sha numkeys key...), or the default node.

    Raises ``SlotNotCoveredError`` when the client's slot map has a hole (it was read
    while the cluster was failing over); the caller then has the map read again.
    """
    if len(args) > 3 and int(args[2]) > 0:
        return client.get_node_from_key(args[3])
    return client.get_default_node()


def _slot_map_is_stale(error: BaseException) -> bool:
    return "SlotNotCoveredError" in client_error_names(error)


class SyncClusterSender:
    """Sends each script once, to the node that owns its slot, on a ``RedisCluster``-like client.

    With ``target_nodes`` the cluster client does not re-send a command whose
    connection failed (it still follows ``MOVED``/``ASK``, which mean the script did
    not run); its node connections never retry.
    """

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = weakref.ref(client)
        self._evictions = evictions

    def call(self, *args: Any) -> Any:
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        try:
            node = _cluster_target(client, args)
        except Exception as error:
            if _slot_map_is_stale(error):  # as the cluster client does itself: read the layout again
                _quietly(client.nodes_manager.initialize)
            raise
        if self._evictions.claim(node.name):
            try:
                reply = client.execute_command(*_CONFIG_GET, target_nodes=node)
            except BaseException as error:
                if not is_reply_error(error):
                    self._evictions.forget(node.name)
                    raise
                self._evictions.refused(node.name, error)
            else:
                self._evictions.report(node.name, reply)
        return client.execute_command(*args, target_nodes=node)

    def load(self, script: str) -> None:
        """SCRIPT LOAD ``script`` on every primary (the cluster client's way)."""
        self._client().script_load(script)  # type: ignore[union-attr]

    def delete(self, keys: Sequence[str]) -> None:
        """DEL ``keys``, split by slot as the cluster client does."""
        self._client().delete(*keys)  # type: ignore[union-attr]


class AsyncClusterSender:
    """Awaitable twin of :class:`SyncClusterSender`, on ``redis.asyncio.RedisCluster``."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = weakref.ref(client)
        self._evictions = evictions

    async def call(self, *args: Any) -> Any:
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        await client.initialize()  # a no-op once done; again after a node failed
        try:
            node = _cluster_target(client, args)
        except Exception as error:
            if _slot_map_is_stale(error):  # as the cluster client does itself: the next call starts afresh
                await _quietly_async(client.aclose())
            raise
        await _drop_stale(node)
        if self._evictions.claim(node.name):
            try:
                reply = await client.execute_command(*_CONFIG_GET, target_nodes=node)
            except BaseException as error:
                if not is_reply_error(error):
                    self._evictions.forget(node.name)
                    raise
                self._evictions.refused(node.name, error)
            else:
                self._evictions.report(node.name, reply)
        return await client.execute_command(*args, target_nodes=node)

    async def load(self, script: str) -> None:
        """SCRIPT LOAD ``script`` on every primary (the cluster client's way)."""
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        await client.initialize()
        for node in client.get_primaries():
            await _drop_stale(node)
        await client.script_load(script)

    async def delete(self, keys: Sequence[str]) -> None:
        """DEL ``keys``, split by slot as the cluster client does."""
        client = self._client()
        if client is None:
            raise RuntimeError("the Redis client of this adapter is gone")
        await client.initialize()
        for node in {id(node): node for node in map(client.get_node_from_key, keys)}.values():
            await _drop_stale(node)
        await client.delete(*keys)


class PlainSender:
    """For clients of another kind: their own ``execute_command``, with whatever retries they do."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = client

    def call(self, *args: Any) -> Any:
        return self._client.execute_command(*args)

    def load(self, script: str) -> None:
        self._client.script_load(script)

    def delete(self, keys: Sequence[str]) -> None:
        self._client.delete(*keys)


class AsyncPlainSender:
    """Awaitable twin of :class:`PlainSender`."""

    def __init__(self, client: Any, evictions: EvictionCheck) -> None:
        self._client = client

    async def call(self, *args: Any) -> Any:
        return await self._client.execute_command(*args)

    async def load(self, script: str) -> None:
        await self._client.script_load(script)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._client.delete(*keys)


def _is_cluster(client: Any) -> bool:
    return hasattr(client, "get_nodes") and hasattr(client, "get_node_from_key")


def sync_sender(client: Any, evictions: EvictionCheck) -> Any:
    """The sender for a synchronous client (see the section comment above)."""
    if _is_cluster(client):
        return SyncClusterSender(client, evictions)
    if hasattr(getattr(client, "connection_pool", None), "get_connection") and hasattr(
        client, "parse_response"
    ):
        return SyncSender(client, evictions)
    return PlainSender(client, evictions)


def async_sender(client: Any, evictions: EvictionCheck) -> Any:
    """The sender for an asyncio client (see the section comment above)."""
    if _is_cluster(client):
        return AsyncClusterSender(client, evictions)
    if hasattr(getattr(client, "connection_pool", None), "get_connection") and hasattr(
        client, "parse_response"
    ):
        return AsyncSender(client, evictions)
    return AsyncPlainSender(client, evictions)


class ScriptClient:
    """What :class:`~limify.core.coalescing.ScriptBatcher` needs of a client, on an :class:`AsyncSender`.

    ``evalsha`` and non-transactional pipelines of ``EVALSHA`` calls, each sent once.
    """

    def __init__(self, sender: AsyncSender) -> None:
        self._sender = sender

    async def evalsha(self, sha: str, num_keys: int, *args: Any) -> Any:
        return await self._sender.call("EVALSHA", sha, num_keys, *args)

    def pipeline(self, transaction: bool = False) -> ScriptPipeline:
        if transaction:
            raise ValueError("Limify's script pipelines are not transactions")
        return ScriptPipeline(self._sender)


class ScriptPipeline:
    """A batch of ``EVALSHA`` calls sent in one round trip, once (see :class:`ScriptClient`)."""

    def __init__(self, sender: AsyncSender) -> None:
        self._sender = sender
        self._commands: list[tuple[Any, ...]] = []

    def evalsha(self, sha: str, num_keys: int, *args: Any) -> ScriptPipeline:
        self._commands.append(("EVALSHA", sha, num_keys, *args))
        return self

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        replies = await self._sender.run(self._commands) if self._commands else []
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies
