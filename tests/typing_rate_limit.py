"""Checked by mypy --strict in tests/test_typing.py, and run there too: what type checkers see of @rate_limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any

from typing_extensions import assert_type

from limify import LimitationResult, rate_limit
from limify.decorator import AsyncLimitHandle, LimitHandle


@rate_limit("10/minute", key="user_id", storage="memory://typing")
def profile(user_id: int, *, verbose: bool = False) -> dict[str, int]:
    """A sync endpoint."""
    return {"user_id": user_id}


@rate_limit("10/minute", key="user_id", storage="memory://typing")
async def aprofile(user_id: int) -> str:
    """An async endpoint."""
    return str(user_id)


class Client:
    """Methods keep their return types and handles."""

    @rate_limit("10/minute", storage="memory://typing")
    def fetch(self, path: str) -> bytes:
        return path.encode()

    @rate_limit("10/minute", storage="memory://typing")
    async def afetch(self, path: str) -> bytes:
        return path.encode()

    @rate_limit("10/minute", storage="memory://typing")
    @staticmethod
    def version() -> int:
        return 1


def check() -> None:
    """Every assertion is checked statically by mypy and dynamically when run."""
    assert_type(profile(7), dict[str, int])
    assert_type(profile(7, verbose=True), dict[str, int])
    assert_type(profile.rate_limit, LimitHandle)
    assert_type(profile.rate_limit.peek(7), LimitationResult)
    assert_type(profile.rate_limit.reset(7), None)
    assert_type(aprofile.rate_limit, AsyncLimitHandle)

    async def awaited() -> None:
        peeked = assert_type(aprofile.rate_limit.peek(7), Awaitable[LimitationResult])
        assert (await peeked).allowed
        assert await assert_type(aprofile(7), Coroutine[Any, Any, str]) == "7"

    asyncio.run(awaited())
    client = Client()
    assert_type(client.fetch("/a"), bytes)
    assert_type(client.fetch.rate_limit, LimitHandle)
    assert_type(client.afetch.rate_limit, AsyncLimitHandle)
    assert asyncio.run(client.afetch("/b")) == b"/b"
    assert_type(Client.version(), int)
    assert isinstance(profile.rate_limit, LimitHandle) and isinstance(client.fetch.rate_limit, LimitHandle)
