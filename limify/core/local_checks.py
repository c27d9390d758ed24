"""The hot path of web checks on an in-memory store: the key straight to the store's runner.

A web rule whose check is one limit of a fixed cost, with no plan provider,
nothing stacked on it (application-wide limits, penalty) and an in-memory store
(which never fails, so no failure policy answers) is decided as the store's
:meth:`~limify.InMemoryAdapter.runner` decides it, without a
:class:`~limify.core.check.Check`, the engine's loop or an outcome in between,
like ``@rate_limit``'s fast path. The decision is the one the engine path would
give: same keys, same result, same request scope.

Anything that needs more goes the engine's way: decision listeners
(:mod:`limify.events`), ``on_breach``, shadow mode, switched-off limits, an
algorithm that writes on refusals or holds leases, another store. What the
process defaults decide is read again whenever they change
(``DEFAULTS.version``).
"""

from __future__ import annotations

from collections.abc import Callable

from limify import events
from limify.core.algorithms.base import AlgorithmSpec, Step
from limify.core.context import Identity
from limify.core.decision import Decision
from limify.core.engine import Engine
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.request_check import build_keys, stacked
from limify.core.request_scope import current
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig, Rule
from limify.core.storage import DEFAULTS

__all__ = ["LocalRuns", "decide_locally"]

Run = Callable[[str], Step]


class LocalRuns:
    """One limiter's store runners per rule, rebuilt when the process defaults change."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: dict[str, tuple[int, Engine, Run | None]] = {}

    def run_for(self, config: LimifyConfig, spec: AlgorithmSpec, rule: Rule, engine: Engine) -> Run | None:
        """The runner deciding ``rule``'s checks on ``engine``'s store, or ``None``: the engine's way."""
        if events.listeners:
            return None
        found = self._runs.get(rule.id)
        if found is None or found[0] != DEFAULTS.version or found[1] is not engine:
            found = (DEFAULTS.version, engine, _build(config, spec, rule, engine))
            self._runs[rule.id] = found
        return found[2]


def _build(config: LimifyConfig, spec: AlgorithmSpec, rule: Rule, engine: Engine) -> Run | None:
    settings = engine.settings
    shadow = DEFAULTS.shadow if settings.shadow is None else settings.shadow
    if shadow or DEFAULTS.unenforced or settings.on_breach is not None or not DEFAULTS.enabled:
        return None
    if stacked(config, rule) or len(rule.plans) != 1 or type(rule.cost) is not int:
        return None
    if spec.on_refusal is not None or spec.lease:
        return None
    store = engine.store
    if type(store) is not InMemoryAdapter:
        return None
    return store.runner(spec, rule.plans[0], rule.cost)


def decide_locally(rule: Rule, identity: Identity, run: Run) -> Decision:
    """The decision of one request on ``rule``'s runner, recorded in the request scope."""
    keys = build_keys(rule, rule.plans, rule.shared, identity)
    step = run(keys[0])
    plans = rule.plans
    result = LimitationResult(bool(step[0]), int(step[1]), plans[0].limit, step[2] / 1e6, step[3] / 1e6)
    decision = Decision(result, rule, plans, keys, scopes=(rule.id,))
    scope = current()
    if scope is not None:
        scope.add(decision)
    return decision
