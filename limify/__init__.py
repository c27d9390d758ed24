"""Limify: decorator-based rate limits for sync and async Python callables.

The everyday names live here; see README.rst for a tour and docs/ for the documentation.
"""

from __future__ import annotations

from limify.core.algorithms.penalty import Penalty
from limify.core.clock import Clock, ManualClock, SystemClock
from limify.core.context import RequestContext
from limify.core.limify import Limify
from limify.core.decision import APPLICATION, Decision
from limify.core.limiter import UNLIMITED
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.plans import Plan, PlanProvider, PlanRegistry, plans
from limify.core.rate import GlobalLimit, parse_rate, parse_rates
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig, Rule
from limify.decorator import configure, get_default_storage, rate_limit
from limify.errors import LimifyError, PlanError, RateLimitExceeded, StorageError

__all__ = [
    "rate_limit",
    "configure",
    "get_default_storage",
    "parse_rate",
    "parse_rates",
    "GlobalLimit",
    "Plan",
    "PlanRegistry",
    "PlanProvider",
    "plans",
    "LimitationResult",
    "InMemoryAdapter",
    "RateLimitExceeded",
    "LimifyError",
    "StorageError",
    "PlanError",
    "Clock",
    "SystemClock",
    "ManualClock",
    "Limify",
    "LimifyConfig",
    "Rule",
    "RequestContext",
    "UNLIMITED",
    "APPLICATION",
    "Decision",
    "Penalty",
]

__version__ = "0.1.0"
