"""The eviction check: warn once per server whose ``maxmemory-policy`` can evict limiter keys."""

from __future__ import annotations

import logging
from typing import Any

from limify.core.forksafe import fork_safe_lock
from limify.core.redis_errors import is_reply_error

__all__ = ["EVICTING_POLICIES", "EvictionCheck", "CONFIG_GET"]

log = logging.getLogger("limify")


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

    def failed(self, server: str, error: BaseException) -> None:
        """The read of ``server``'s policy raised ``error``. A refused ``CONFIG GET`` (an error
        reply) is left at that; anything else is raised again, and the next call reads again."""
        if is_reply_error(error):
            log.debug("limify: could not read the maxmemory-policy of Redis at %s: %s", server, error)
            return
        self.forget(server)
        raise error

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
                "'Memory and eviction' on the documentation's page Deploying on Redis).",
                server,
                policy,
                settings.get("maxmemory", "?"),
                which,
            )


CONFIG_GET = ("CONFIG", "GET", "maxmemory*")
