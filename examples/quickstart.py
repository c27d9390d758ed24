"""Limify quickstart: sync and async calls on the in-memory default, no server needed.

Run:  python examples/quickstart.py
"""

from __future__ import annotations

import asyncio

from limify import RateLimitExceeded, rate_limit


@rate_limit("3/minute", key="user_id")
def get_profile(user_id: str) -> str:
    """A sync function: three calls per minute for each user."""
    return f"profile of {user_id}"


@rate_limit("2/second")
async def fetch_prices() -> list[int]:
    """An async function: two calls per second in all."""
    return [101, 99, 103]


def sync_demo() -> None:
    print("sync: get_profile at 3/minute per user")
    for attempt in range(1, 5):
        try:
            print(f"  call {attempt}: allowed -> {get_profile('alice')}")
        except RateLimitExceeded as refused:
            print(f"  call {attempt}: refused, retry after {refused.retry_after:.1f}s")
    print(f"  another user has their own bucket -> {get_profile('bob')}")


async def async_demo() -> None:
    print("async: fetch_prices at 2/second")
    for attempt in range(1, 4):
        try:
            print(f"  call {attempt}: allowed -> {await fetch_prices()}")
        except RateLimitExceeded as refused:
            print(f"  call {attempt}: refused, retry after {refused.retry_after:.2f}s")


if __name__ == "__main__":
    sync_demo()
    asyncio.run(async_demo())
