"""Exceptions raised by Limify."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from limify.core.result import LimitationResult

__all__ = ["LimifyError", "RateLimitExceeded", "StorageError", "PlanError"]


class LimifyError(Exception):
    """Base class of every exception Limify raises on purpose."""


class RateLimitExceeded(LimifyError):
    """A call was refused because its limit is exhausted.

    Attributes:
        result: the :class:`~limify.LimitationResult` of the refused check.
        key: the storage key of the bucket that refused the call.
        retry_after: seconds (a float > 0) until the same call would be admitted.
    """

    # Refusals are a hot path (a flood of refused calls): the message is written only
    # when someone reads it, and the hot path's refusals build their result lazily too.
    # Slots: no attribute dict is made per refusal.
    __slots__ = ("_result", "_decision", "key", "retry_after")

    def __init__(self, result: LimitationResult, key: str) -> None:
        super().__init__()
        self._result: LimitationResult | None = result
        self._decision: tuple[bool, int, int, float, float] | None = None
        self.key = key
        self.retry_after: float = result.retry_after

    @classmethod
    def refused(cls, key: str, remaining: int, limit: int, reset_us: int, retry_us: int) -> RateLimitExceeded:
        """The exception of a refusal whose result is built only when read (the hot path's)."""
        error = cls.__new__(cls)
        error._result = None
        error._decision = (False, remaining, limit, reset_us / 1e6, retry_us / 1e6)
        error.key = key
        error.retry_after = retry_us / 1e6
        return error

    @property
    def result(self) -> LimitationResult:
        """The :class:`~limify.LimitationResult` of the refused check."""
        if self._result is None:
            from limify.core.result import LimitationResult

            assert self._decision is not None
            self._result = LimitationResult(*self._decision)
        return self._result

    def __str__(self) -> str:
        result = self.result
        return f"rate limit exceeded for {self.key!r}: {result.limit} allowed, retry after {self.retry_after:.3f}s"

    def __reduce__(self) -> tuple[type[RateLimitExceeded], tuple[LimitationResult, str]]:
        # Keeps the exception picklable (Celery and multiprocessing ship it across processes).
        return (type(self), (self.result, self.key))


class StorageError(LimifyError):
    """The storage backend could not be used (bad configuration or unreachable server)."""


class PlanError(LimifyError, ValueError):
    """A plan cannot serve a call: its limit is below the call's cost.

    No call of that cost could ever be admitted, so waiting or retrying is
    pointless; the message names the plan, its limit and the cost. Raised where
    the plan is chosen: at decoration for inline rates, at the call for plans a
    plan provider picks (web adapters log it and answer with the rule's failure
    policy instead).
    """
