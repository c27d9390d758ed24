"""Every algorithm's Python codec writes the text its Lua twin stores on a real server.

The same random calls run in memory (Python states) and on redis-server (Lua
states), on one manual clock. After each call, the in-memory state of every key,
written by the algorithm's codec, must equal what Redis holds (a string value,
or a sorted set as the codec renders members); the codec reads its text back to
a state that decides exactly like the original. Derived from the algorithm
registry, so a new algorithm is covered by adding it there.
"""

from __future__ import annotations

from typing import Any

import redis
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, Plan
from limify.core.algorithms.base import CONSUME, PEEK, REFUND, AlgorithmSpec
from limify.core.algorithms.codecs import ZsetCodec
from limify.core.check import Check
from limify.core.redis_adapter import RedisSyncAdapter
from tests.histories import each_spec
from tests.strategies import gaps_us, plans

TOKENS = st.sampled_from(["", "a", "b"])


def stored_text(client: redis.Redis, spec: AlgorithmSpec, key: str) -> str | None:
    """What Redis holds at ``key``, as text of the kind the codec writes."""
    if spec.codec.redis_kind == "zset":
        members = client.zrange(key, 0, -1, withscores=True)
        return ZsetCodec.text([(score, member.decode()) for member, score in members]) if members else None
    raw = client.get(key)
    return None if raw is None else raw.decode()


def live_state(memory: InMemoryAdapter, key: str, now: int) -> Any:
    """The in-memory state of ``key`` if it is still live at ``now`` (else ``None``)."""
    entry = memory._data.get(key)
    return entry[0] if entry is not None and entry[1] > now else None


@each_spec
@given(
    limit=plans,
    calls=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.integers(1, 3),
            gaps_us,
            st.sampled_from([CONSUME, CONSUME, PEEK, REFUND]),
            TOKENS,
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_python_codec_text_equals_what_lua_stores(
    redis_client: redis.Redis, spec: AlgorithmSpec, limit: Plan, calls: list[tuple[int, int, int, str, str]]
) -> None:
    """After each call, codec.dumps(Python state) == Redis' value, and loads(text) decides the same."""
    redis_client.flushdb()
    plan = Plan("p", max(limit.limit, 3), limit.period_seconds)
    clock = ManualClock()
    memory = InMemoryAdapter(clock=clock)
    remote = RedisSyncAdapter(redis_client, clock=clock)
    for index, cost, gap, mode, token in calls:
        clock.advance(us=gap)
        key = f"limify:codec:{index}"
        if live_state(memory, key, clock.now_us()) is None:
            # Redis keeps keys at least a second (MIN_TTL_MS); memory drops a state as soon
            # as it is stale. Either reads as no state, but cum-like counters built on a
            # stale one would differ in their absolute values, so Redis forgets it too.
            redis_client.delete(key)
        check = Check(spec, (key,), (plan,), cost, mode, token or ("t" if spec.lease else ""))
        assert memory.execute(check) == remote.execute(check)
        now = clock.now_us()
        state = live_state(memory, key, now)
        if state is None:
            continue  # nothing live in memory; Redis may keep a stale state, which decides as none
        text = spec.codec.dumps(state)
        assert stored_text(redis_client, spec, key) == text
        decoded = spec.codec.loads(text)
        assert spec.codec.dumps(decoded) == text
        probe = (now + gap // 2, plan, cost, "t")
        assert spec.transition(decoded, *probe)[:4] == spec.transition(state, *probe)[:4]


@each_spec
def test_text_that_is_no_state_reads_as_none(spec: AlgorithmSpec) -> None:
    """Empty or garbled text is no state at all: the codec says None, never raises."""
    for text in ("", "garbage", "1:2:3:4:5", "[[1]]", "{}"):
        assert spec.codec.loads(text) is None
