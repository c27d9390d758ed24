"""Redis storage: each algorithm's Lua twin runs in one atomic EVALSHA.

The adapters only move data: they turn a check into ``KEYS``/``ARGV`` for the
algorithm's script and its reply into an outcome. Scripts are identified by
their SHA-1, computed locally; when the server answers ``NOSCRIPT`` (it was
restarted, or someone ran ``SCRIPT FLUSH``) the adapter loads the script and
retries once, so callers never see it. A server that cannot be reached (refused
connection, timeout) surfaces as :class:`limify.StorageError`, whatever the
client library, so that failure policies have one exception to handle.

While a Redis Cluster slot is being migrated, a script whose keys are split
between the two masters (a compound limit: some keys already moved, others not
yet, or not created yet) is answered ``TRYAGAIN``. The cluster client retries
that only briefly (redis-py gives up after about 0.4 s with ``ClusterError: TTL
exhausted``), while a migration may take seconds, so the adapters keep retrying
for up to :attr:`_ScriptBook.resharding_wait` seconds. Neither answer means the
script ran, so retrying cannot count a call twice; a slot still split after
that wait surfaces as :class:`limify.StorageError`, for the failure policy.

A script is sent at most once, whatever the client's retry settings: a reply lost
on the way back (a timeout, a dropped connection) surfaces as
:class:`limify.StorageError` rather than running the script again, which would count
one call twice or give a refund back twice. See "Sending scripts at most once" in
:mod:`limify.core.redis_sending`.

Some answers mean the server cannot take the call at all: ``OOM`` (``maxmemory``
reached under ``noeviction``), ``READONLY`` (a replica, such as a demoted master),
``BUSY`` (another script is running past its time limit), ``NOREPLICAS``,
``MISCONF``, ``MASTERDOWN``, ``LOADING`` and ``NOPERM`` (the ACL user may not run
scripts or reach the keys). They surface as :class:`limify.StorageError` too, so the
failure policy decides; any other error reply (a key of the wrong type, a bug in a
script) is raised as the client raised it.

At first use of each server the adapter reads its ``maxmemory-policy`` and logs one
warning on the ``limify`` logger if the server may evict keys under memory pressure:
an evicted key is a limit that starts afresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from limify.core.algorithms.base import AlgorithmSpec, Outcome
from limify.core.clock import Clock
from limify.core.algorithms.pause import PAUSE_SCRIPT
from limify.core.check import Check
from limify.core.coalescing import ScriptBatcher
from limify.core.redis_clients import ClientPerLoop, close_sync, sync_client
from limify.core.redis_cluster_sending import async_sender, sync_sender
from limify.core.redis_errors import (
    is_noscript,
    is_refusal,
    is_resharding,
    is_storage_failure,
    is_unreachable,
)
from limify.core.redis_eviction import EvictionCheck
from limify.core.refusals import forget_cleared
from limify.errors import StorageError

__all__ = [
    "RedisSyncAdapter",
    "RedisAsyncAdapter",
    "is_unreachable",
    "is_refusal",
    "is_storage_failure",
    "is_noscript",
    "is_resharding",
]

#: Seconds between two attempts while a slot is half-migrated.
_RESHARDING_PAUSE = 0.05


def _as_is(reply: Any) -> Any:
    return reply


def _describe(client: Any) -> str:
    """A short description of a client for logs: where it connects, not its whole state."""
    url = getattr(client, "url", None)
    if isinstance(url, str):
        return repr(url)
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if isinstance(kwargs, dict) and "host" in kwargs:
        return f"'{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}'"
    if isinstance(kwargs, dict) and "path" in kwargs:
        return f"'unix:{kwargs['path']}'"
    return type(client).__name__


class _ScriptBook:
    """What both adapters share: script sources by SHA and the ARGV layout."""

    def __init__(self, client: Any, *, clock: Clock | None = None) -> None:
        if clock is not None and not callable(getattr(clock, "now_us", None)):
            raise TypeError(f"clock must be None (server time) or have now_us(), got {clock!r}")
        self.client = client
        #: ``None``: the script reads Redis ``TIME`` (immune to app-server clock
        #: skew). A :class:`~limify.core.clock.Clock`: the caller's clock is sent.
        self.clock = clock
        self._sources: dict[str, str] = {}
        self._spec_shas: dict[str, str] = {}
        self._pause_sha: str | None = None
        #: Which servers' eviction policies were read (see the module docs).
        self._evictions = EvictionCheck()

    #: How long a call keeps retrying a Cluster slot that is half-migrated
    #: (see the module docs) before raising :class:`limify.StorageError`.
    resharding_wait = 2.0

    def _after_failure(self, error: Exception, first_failure: float | None) -> float:
        """Raise what ``error`` stands for, unless the call should be retried.

        Returns the time of the call's first resharding failure, to be passed back
        on the next failure, so that the retries stop after :attr:`resharding_wait`.
        """
        if is_refusal(error):
            raise StorageError(f"Redis cannot serve the call: {type(error).__name__}: {error}") from error
        if is_unreachable(error):
            raise StorageError(f"Redis unreachable: {error}") from error
        if not is_resharding(error):
            raise error
        now = time.monotonic()
        first_failure = now if first_failure is None else first_failure
        if now - first_failure >= self.resharding_wait:
            raise StorageError(
                f"Redis Cluster slot still being migrated after {self.resharding_wait}s: {error}"
            ) from error
        return first_failure

    def _remember(self, script: str) -> str:
        sha = hashlib.sha1(script.encode("utf-8")).hexdigest()
        self._sources[sha] = script
        return sha

    def _sha(self, spec: AlgorithmSpec) -> str:
        sha = self._spec_shas.get(spec.name)
        if sha is None:
            sha = self._spec_shas[spec.name] = self._remember(spec.script)
        return sha

    def _source(self, sha: str) -> str:
        try:
            return self._sources[sha]
        except KeyError:
            raise NoScriptError(f"script {sha} is unknown to this adapter; load it first") from None

    def _command(self, check: Check) -> tuple[Any, ...]:
        """``EVALSHA`` of ``check``: its keys, then the ARGV layout of ``driver.lua``."""
        spec, keys = check.spec, check.keys
        now = "" if self.clock is None else self.clock.now_us()
        args = [spec.script_args(plan) for plan in check.plans]
        command: list[Any] = ["EVALSHA", self._sha(spec), len(keys), *keys]
        command += [now, check.cost, check.mode, len(args[0]), check.token]
        for plan_args in args:
            command.extend(plan_args)
        return tuple(command)

    def _pause_command(self, key: str, ms: int) -> tuple[Any, ...]:
        sha = self._pause_sha or self._remember(PAUSE_SCRIPT)
        self._pause_sha = sha
        return ("EVALSHA", sha, 1, key, ms)

    def _eval(self, command: tuple[Any, ...]) -> tuple[Any, ...]:
        """The ``EVAL`` twin of an ``EVALSHA`` command: it runs and caches the source in one step."""
        return ("EVAL", self._source(command[1]), *command[2:])

    @staticmethod
    def _outcome(reply: Sequence[int]) -> Outcome:
        return Outcome(reply[0] == 1, reply[1], reply[2], reply[3], reply[4], reply[5])

    def __repr__(self) -> str:
        clock = "server TIME" if self.clock is None else repr(self.clock)
        return f"{type(self).__name__}({_describe(self.client)}, clock={clock})"


class RedisSyncAdapter(_ScriptBook):
    """Storage on a synchronous ``redis.Redis`` client (or any client with its API).

    Args:
        client: a ``redis.Redis`` instance.
        clock: ``None`` (default) to use the Redis server's clock, or a
            :class:`~limify.core.clock.Clock` to send the caller's time.
    """

    def __init__(self, client: Any, *, clock: Clock | None = None) -> None:
        super().__init__(client, clock=clock)
        self._sender = sync_sender(client, self._evictions)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, **client_options: Any) -> RedisSyncAdapter:
        """Build an adapter with its own client for ``url``.

        Any URL of :mod:`limify.core.redis_clients` works: ``redis://``, ``rediss://``,
        ``unix://``, ``redis+sentinel://``, ``redis+cluster://``.
        """
        return cls(sync_client(url, **client_options), clock=clock)

    def script_load(self, script: str) -> str:
        """Load ``script`` into the server and return its SHA-1."""
        self._sender.load(script)
        return self._remember(script)

    def evalsha(self, sha: str, num_keys: int, *keys_and_args: Any) -> Any:
        """Run a loaded script, loading it again first if the server lost it.

        The script is sent once: a failure after sending is raised, never retried.
        """
        try:
            return self._sender.call("EVALSHA", sha, num_keys, *keys_and_args)
        except Exception as error:
            if not is_noscript(error):
                raise
            # EVAL runs the source and caches it again in one step: no window in
            # which a concurrent SCRIPT FLUSH could strike between load and call.
            return self._sender.call("EVAL", self._source(sha), num_keys, *keys_and_args)

    def execute(self, check: Check) -> Outcome:
        """Run ``check``'s script over its keys in one EVALSHA.

        Raises:
            limify.StorageError: the server could not be reached or refused the call.
        """
        return self._outcome(self._run(self._command(check)))

    def hold(self, key: str, ms: int) -> int:
        """The outbound pause of ``key`` (``pause.lua``), on the server's clock."""
        return int(self._run(self._pause_command(key, ms)))

    def _run(self, command: tuple[Any, ...]) -> Any:
        """Send ``command`` once (EVAL on NOSCRIPT), again only while its slot is half-migrated."""
        first_failure = None
        while True:
            try:
                try:
                    if command[0] == "DEL":  # split by slot on a cluster, as its client does
                        return self._sender.delete(command[1:])
                    return self._sender.call(*command)
                except Exception as error:
                    if command[0] != "EVALSHA" or not is_noscript(error):
                        raise
                    return self._sender.call(*self._eval(command))
            except Exception as error:
                first_failure = self._after_failure(error, first_failure)
            time.sleep(_RESHARDING_PAUSE)

    def close(self) -> None:
        """Close the client (and, for Sentinel URLs, the connections to the sentinels)."""
        close_sync(self.client)

    def clear(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (and the refusals this process cached on them)."""
        if keys:
            self._run(("DEL", *keys))
            forget_cleared(self, keys)


class RedisAsyncAdapter(_ScriptBook):
    """Storage on a ``redis.asyncio.Redis`` client.

    Args:
        client: a ``redis.asyncio.Redis`` instance.
        clock: ``None`` (default) to use the Redis server's clock, or a
            :class:`~limify.core.clock.Clock` to send the caller's time.
    """

    def __init__(self, client: Any, *, clock: Clock | None = None, coalesce: bool = True) -> None:
        super().__init__(client, clock=clock)
        #: Whether concurrent checks share round trips (see :mod:`limify.core.coalescing`).
        self.coalesce = coalesce
        self._batchers: weakref.WeakKeyDictionary[Any, ScriptBatcher] = weakref.WeakKeyDictionary()
        self._senders: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock | None = None, coalesce: bool = True, **client_options: Any
    ) -> RedisAsyncAdapter:
        """Build an adapter that opens ``redis.asyncio`` clients for ``url``, one per event loop.

        Any URL of :mod:`limify.core.redis_clients` works.
        """
        return cls(ClientPerLoop(url, client_options), clock=clock, coalesce=coalesce)

    def _batcher(self, client: Any) -> ScriptBatcher | None:
        if not self.coalesce or hasattr(client, "get_nodes"):  # cluster pipelines split by node
            return None
        batcher = self._batchers.get(client)
        if batcher is None:
            batcher = self._batchers[client] = ScriptBatcher(
                self._sender(client).run, self._recover, is_unreachable
            )
        return batcher

    def _sender(self, client: Any) -> Any:
        """How scripts are sent on ``client``: once each (see the module docs)."""
        sender = self._senders.get(client)
        if sender is None:
            sender = self._senders[client] = async_sender(client, self._evictions)
        return sender

    async def _recover(self, error: BaseException, command: tuple[Any, ...]) -> Any:
        """A NOSCRIPT answer gets the script's source (EVAL caches it again); anything else is raised."""
        if command[0] != "EVALSHA" or not is_noscript(error):
            raise error
        return await self._sender(await self._client()).call(*self._eval(command))

    async def _client(self) -> Any:
        client = self.client
        if isinstance(client, ClientPerLoop):
            return client.current() or await client.open()
        return client

    async def script_load(self, script: str) -> str:
        """Load ``script`` into the server and return its SHA-1."""
        await self._sender(await self._client()).load(script)
        return self._remember(script)

    async def evalsha(self, sha: str, num_keys: int, *keys_and_args: Any) -> Any:
        """Run a loaded script, loading it again first if the server lost it.

        The script is sent once: a failure after sending is raised, never retried.
        """
        command = ("EVALSHA", sha, num_keys, *keys_and_args)
        client = await self._client()
        try:
            return await self._sender(client).call(*command)
        except Exception as error:
            return await self._recover(error, command)

    # The public methods return _run's coroutine rather than await it: one frame
    # less on every call (see tests/test_frames.py).

    def execute_async(self, check: Check) -> Awaitable[Outcome]:
        """Run ``check``'s script over its keys in one EVALSHA (shared with concurrent checks).

        Raises:
            limify.StorageError: the server could not be reached or refused the call.
        """
        return self._run(self._command(check), self._outcome)

    def hold_async(self, key: str, ms: int) -> Awaitable[int]:
        """The outbound pause of ``key`` (``pause.lua``), on the server's clock."""
        return self._run(self._pause_command(key, ms), int)

    async def _run(self, command: tuple[Any, ...], parse: Callable[[Any], Any] = _as_is) -> Any:
        """Send ``command`` once, through the client's batcher when coalescing (see the sync twin);
        ``parse`` its reply."""
        first_failure = None
        while True:
            client = self.client
            if type(client) is ClientPerLoop:
                client = client.current() or await client.open()
            batcher = self._batchers.get(client) if self.coalesce else None
            try:
                try:
                    if command[0] == "DEL":  # split by slot on a cluster, as its client does
                        return await self._sender(client).delete(command[1:])
                    if batcher is None and (batcher := self._batcher(client)) is None:
                        return parse(await self._sender(client).call(*command))
                    return parse(await batcher.call(command))
                except Exception as error:
                    return parse(await self._recover(error, command))
            except Exception as error:
                first_failure = self._after_failure(error, first_failure)
            await asyncio.sleep(_RESHARDING_PAUSE)

    async def clear_async(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (and the refusals this process cached on them)."""
        if keys:
            await self._run(("DEL", *keys))
            forget_cleared(self, keys)
