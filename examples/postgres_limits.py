"""Rate limits kept in PostgreSQL: one table, a row per key, every check one transaction.

The table (``limify_state``) is created at first use. Sync functions get the sync
adapter, async ones the async adapter (asyncio), from the same URL. Point
LIMIFY_POSTGRES_URL at a database the example may write to.

Install:  python -m pip install '.[postgres]'
Run:      LIMIFY_POSTGRES_URL=postgresql://user@localhost:5432/db python examples/postgres_limits.py
"""

from __future__ import annotations

import asyncio
import os
import uuid

from limify import RateLimitExceeded, rate_limit

URL = os.environ.get("LIMIFY_POSTGRES_URL", "postgresql://postgres@localhost:5432/postgres")
RUN = uuid.uuid4().hex[:8]  # a fresh limit each run, so the output is the same every time


@rate_limit("2/minute", storage=URL, key="user", name=f"example-report-{RUN}")
def export_report(user: str) -> str:
    """At most 2 exports per user and minute, counted in PostgreSQL."""
    return f"report for {user}"


@rate_limit("1/minute", storage=URL, key="user", name=f"example-async-{RUN}")
async def send_digest(user: str) -> str:
    """At most 1 digest per user and minute, from async code."""
    return f"digest for {user}"


def main() -> None:
    """Three exports and two digests for one user: the third and the second are refused."""
    for attempt in range(1, 4):
        try:
            print(f"export #{attempt}: {export_report('ada')}")
        except RateLimitExceeded as refused:
            print(f"export #{attempt}: refused, retry after {refused.retry_after:.0f}s")

    async def digests() -> None:
        for attempt in range(1, 3):
            try:
                print(f"digest #{attempt}: {await send_digest('ada')}")
            except RateLimitExceeded:
                print(f"digest #{attempt}: refused")

    asyncio.run(digests())


if __name__ == "__main__":
    main()
