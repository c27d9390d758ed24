"""The outcome of one rate-limit check."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LimitationResult"]


@dataclass(frozen=True, slots=True)
class LimitationResult:
    """What a limit decided for one call.

    Attributes:
        allowed: whether the call was admitted (and its cost consumed).
        remaining: how much cost the same key could still spend right now.
        limit: the plan's limit.
        reset_after: seconds until the key's state is back to fresh (a full
            bucket, an empty window).
        retry_after: seconds until a call of the same cost would be admitted;
            ``0.0`` when this one was.
    """

    allowed: bool
    remaining: int
    limit: int
    reset_after: float
    retry_after: float
