"""Rate-limiting algorithms, each a pure transition with a Lua twin.

:data:`ALGORITHMS` maps the names accepted by ``rate_limit(algorithm=...)`` to
their (sync, async) shell classes.
"""

from __future__ import annotations

from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.algorithms.concurrency import (
    AsyncConcurrencyAlgorithm,
    ConcurrencyAlgorithm,
)
from limify.core.algorithms.fixed_window import (
    AsyncFixedWindowAlgorithm,
    FixedWindowAlgorithm,
)
from limify.core.algorithms.gcra import AsyncGCRAAlgorithm, GCRAAlgorithm
from limify.core.algorithms.leaky_bucket import (
    AsyncLeakyBucketAlgorithm,
    LeakyBucketAlgorithm,
)
from limify.core.algorithms.quota import AsyncQuotaAlgorithm, QuotaAlgorithm
from limify.core.algorithms.sliding_log import (
    AsyncSlidingLogAlgorithm,
    SlidingLogAlgorithm,
)
from limify.core.algorithms.sliding_window import (
    AsyncSlidingWindowAlgorithm,
    SlidingWindowAlgorithm,
)
from limify.core.algorithms.token_bucket import (
    AsyncTokenBucketAlgorithm,
    TokenBucketAlgorithm,
)

__all__ = ["ALGORITHMS", "algorithm_classes"]

ALGORITHMS: dict[str, tuple[type[SyncAlgorithm], type[AsyncAlgorithm]]] = {
    "token_bucket": (TokenBucketAlgorithm, AsyncTokenBucketAlgorithm),
    "fixed_window": (FixedWindowAlgorithm, AsyncFixedWindowAlgorithm),
    "sliding_window": (SlidingWindowAlgorithm, AsyncSlidingWindowAlgorithm),
    "quota": (QuotaAlgorithm, AsyncQuotaAlgorithm),
    "concurrency": (ConcurrencyAlgorithm, AsyncConcurrencyAlgorithm),
    "sliding_log": (SlidingLogAlgorithm, AsyncSlidingLogAlgorithm),
    "leaky_bucket": (LeakyBucketAlgorithm, AsyncLeakyBucketAlgorithm),
    "gcra": (GCRAAlgorithm, AsyncGCRAAlgorithm),
}


def algorithm_classes(name: str) -> tuple[type[SyncAlgorithm], type[AsyncAlgorithm]]:
    """The (sync, async) classes of the algorithm called ``name``.

    Raises:
        ValueError: no algorithm has that name; the message lists the known ones.
    """
    try:
        return ALGORITHMS[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(n) for n in sorted(ALGORITHMS))
        raise ValueError(f"unknown algorithm {name!r}: expected one of {known}") from None
