"""How deep a decorated async call on Redis goes before it reaches redis-py: at most 6 Limify frames.

Every frame between the wrapper and the client is paid on every call; the engine
keeps that path short (wrapper, engine, adapter, batcher, sender). A profiler hook
counts the Limify frames on the stack each time Limify code calls into redis-py,
for a steady-state call (the script is loaded and the eviction check done).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import limify
import redis
from limify import rate_limit

LIMIFY_DIR = str(Path(limify.__file__).parent)
REDIS_DIR = str(Path(redis.__file__).parent)
MOST_FRAMES = 6


def limify_frames(frame: FrameType | None) -> int:
    """The Limify frames on the stack from ``frame`` outwards."""
    count = 0
    while frame is not None:
        count += frame.f_code.co_filename.startswith(LIMIFY_DIR)
        frame = frame.f_back
    return count


def inside_redis(frame: FrameType | None) -> bool:
    """Whether redis-py code is on the stack from ``frame`` outwards."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(REDIS_DIR):
            return True
        frame = frame.f_back
    return False


def deepest_limify_chain(call: Any) -> int:
    """The most Limify frames on the stack whenever Limify calls redis-py during ``await call()``."""
    deepest = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        caller = frame.f_back
        if (
            event == "call"
            and frame.f_code.co_filename.startswith(REDIS_DIR)
            and caller is not None
            and caller.f_code.co_filename.startswith(LIMIFY_DIR)
            and not inside_redis(caller)  # Limify code redis-py calls back (a retry hook) is not the path
        ):
            deepest[0] = max(deepest[0], limify_frames(caller))

    async def profiled() -> None:
        sys.setprofile(profile)
        try:
            await call()
        finally:
            sys.setprofile(None)

    return profiled, deepest  # type: ignore[return-value]


def test_a_decorated_async_call_reaches_redis_through_at_most_six_limify_frames(redis_url: str) -> None:
    """Wrapper, engine, adapter, batcher and sender: no more than six Limify frames per call."""

    @rate_limit("1000/minute", key="user", storage=redis_url, name="frames")
    async def fetch(user: int) -> int:
        return user

    async def main() -> int:
        await fetch(1)  # loads the script and reads the eviction policy: not the steady state
        profiled, deepest = deepest_limify_chain(lambda: fetch(2))
        await profiled()
        return deepest[0]

    assert 0 < asyncio.run(main()) <= MOST_FRAMES
