"""Token bucket: its state on Redis (the contract and the rate algorithms' behaviour are shared)."""

from __future__ import annotations

import redis

from limify import ManualClock, Plan
from limify.core.algorithms.token_bucket import TokenBucketAlgorithm
from limify.core.redis_adapter import RedisSyncAdapter

PLAN = Plan("default", 5, 60)


def test_state_is_tokens_colon_timestamp_with_a_ttl(redis_client: redis.Redis, clock: ManualClock) -> None:
    """The bucket lives at its limify: key as "tokens:last_us" and expires when full again."""
    algorithm = TokenBucketAlgorithm(RedisSyncAdapter(redis_client, clock=clock))
    algorithm.check("limify:items:default:user:42", PLAN, cost=2)
    raw = redis_client.get("limify:items:default:user:42")
    tokens, last = raw.decode().split(":")
    assert float(tokens) == 3.0 and int(last) == clock.now_us()
    ttl_ms = redis_client.pttl("limify:items:default:user:42")
    assert 23_000 < ttl_ms <= 24_000  # 2 tokens at 5/min refill in 24 s
    assert redis_client.keys("*") == [b"limify:items:default:user:42"]
