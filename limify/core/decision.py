"""What a web request was decided: the :class:`Decision` adapters render, and which of several wins.

A request may meet several limits: the config's rule (with the application-wide
limits stacked on it, see :mod:`limify.core.request_check`), a route's own
``RateLimit`` dependency or ``limit_view``, a ``@rate_limit`` endpoint. Each gives
a Decision; :func:`most_restrictive` picks the one a response describes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from limify.core.plan import Plan
from limify.core.result import LimitationResult
from limify.errors import PlanError, StorageError

__all__ = ["Decision", "UNLIMITED", "APPLICATION", "most_restrictive"]

#: The result for a request no rule limits: admitted, ``limit == 0`` (no real plan
#: has a zero limit).
UNLIMITED = LimitationResult(allowed=True, remaining=0, limit=0, reset_after=0.0, retry_after=0.0)
#: The scope name of the application-wide limits (and of a config-wide penalty) in
#: storage keys and :attr:`Decision.scopes`; never a rule id (encoded ids have no ``*``).
APPLICATION = "*app"


@dataclass(frozen=True)
class Decision:
    """Everything a framework adapter needs to answer one request.

    ``status`` is 200 (admitted), 429 (over the limit) or 503: storage
    unreachable under a ``fail_closed`` rule (``storage_error`` says why), or a
    plan chosen by the plan provider whose limit is below the rule's cost
    (``plan_error`` says which; the ``fail_open`` policy admits instead). A
    request the ``fail_open`` policy admitted has ``answered_by_policy`` set: its
    result is the one every entry point reports for it (the smallest limit full),
    but no limit counted it, so adapters send no rate-limit headers.

    ``scopes`` names, for each of ``plans``, where it comes from: the rule's id,
    :data:`APPLICATION` for an application-wide limit, the limit's name for a
    ``@rate_limit`` endpoint; a penalty is not among ``plans``. ``exempt`` is set
    when an exemption (``Rule(exempt=True)``, an ``exempt_when`` hook) let the
    request through uncounted. ``enforced`` is ``False`` in shadow mode: the
    request goes on, with no 429 and no rate-limit headers.
    """

    result: LimitationResult
    rule: Any = None
    plans: tuple[Plan, ...] = ()
    keys: tuple[str, ...] = ()
    storage_error: StorageError | None = None
    plan_error: PlanError | None = None
    answered_by_policy: bool = False
    scopes: tuple[str, ...] = ()
    exempt: bool = False
    enforced: bool = True

    @property
    def status(self) -> int:
        """The HTTP status this decision answers with (200, 429 or 503)."""
        if self.storage_error is not None or self.plan_error is not None:
            return 503
        return 200 if self.result.allowed or not self.enforced else 429

    @property
    def limited(self) -> bool:
        """False when no limit counted this request (no rule, exempt, shadow mode, storage or plan
        failed either way)."""
        return (
            self.result is not UNLIMITED
            and not self.answered_by_policy
            and self.enforced
            and self.storage_error is None
            and self.plan_error is None
        )

    @property
    def blocks(self) -> bool:
        """Whether a refusal is answered (429/503) rather than annotated (``Rule(block=False)``)."""
        return bool(getattr(self.rule, "block", True))


def _restrictive_key(decision: Decision) -> tuple[int, float, float]:
    # A refusal (503 first) beats an admission; among refusals the longest wait;
    # among admissions the smallest remaining.
    result = decision.result
    if decision.status == 503:
        return (2, 0.0, 0.0)
    if not result.allowed:
        return (1, result.retry_after, 0.0)
    return (0, -float(result.remaining), 0.0)


def most_restrictive(decisions: Iterable[Decision]) -> Decision | None:
    """The decision a response describes: the first most restrictive limited (or 503) one, else ``None``."""
    best: Decision | None = None
    for decision in decisions:
        if not decision.limited and decision.status != 503:
            continue
        if best is None or _restrictive_key(decision) > _restrictive_key(best):
            best = decision
    return best
