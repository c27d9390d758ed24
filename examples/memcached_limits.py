"""Rate limits kept in Memcached: each check one compare-and-set on one item.

A compound limit on one identity ("5/minute;100/day") keeps both states in one
item, so it stays all or nothing. Memcached may evict any item (a limit then
starts afresh): see docs/memcached.md. Point LIMIFY_MEMCACHED_URL at a server.

Install:  python -m pip install '.[memcached]'
Run:      LIMIFY_MEMCACHED_URL=memcached://localhost:11211 python examples/memcached_limits.py
"""

from __future__ import annotations

import asyncio
import os
import uuid

from limify import RateLimitExceeded, rate_limit

URL = os.environ.get("LIMIFY_MEMCACHED_URL", "memcached://localhost:11211")
RUN = uuid.uuid4().hex[:8]  # a fresh limit each run, so the output is the same every time


@rate_limit("2/minute;100/day", storage=URL, key="user", name=f"example-search-{RUN}")
def search(user: str, query: str) -> str:
    """At most 2 searches per user and minute, and 100 a day."""
    return f"results for {query!r}"


@rate_limit("1/minute", storage=URL, key="user", name=f"example-async-{RUN}")
async def upload(user: str) -> str:
    """At most 1 upload per user and minute, from async code (asyncio or trio)."""
    return f"upload by {user}"


def main() -> None:
    """Three searches and two uploads for one user: the third and the second are refused."""
    for attempt in range(1, 4):
        try:
            print(f"search #{attempt}: {search('ada', 'limits')}")
        except RateLimitExceeded as refused:
            print(f"search #{attempt}: refused, retry after {refused.retry_after:.0f}s")

    async def uploads() -> None:
        for attempt in range(1, 3):
            try:
                print(f"upload #{attempt}: {await upload('ada')}")
            except RateLimitExceeded:
                print(f"upload #{attempt}: refused")

    asyncio.run(uploads())


if __name__ == "__main__":
    main()
