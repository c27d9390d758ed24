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
from typing import NamedTuple

from limify import events
from limify.core.algorithms.base import AlgorithmSpec, StepTuple
from limify.core.answers import store_answers_alone
from limify.core.context import Identity
from limify.core.decision import Decision
from limify.core.engine import Engine
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.keys import encode_part
from limify.core.request_check import build_keys, stacked
from limify.core.request_scope import current
from limify.core.result import LimitationResult
from limify.core.rules import LimifyConfig, Rule
from limify.core.storage import DEFAULTS

__all__ = ["LocalRuns", "Local", "decide_locally"]

Run = Callable[[str], StepTuple]


class LocalRuns:
    """One limiter's store runners per rule, rebuilt when the process defaults change."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: dict[str, tuple[int, Engine, Rule, Local | None]] = {}

    def run_for(self, config: LimifyConfig, spec: AlgorithmSpec, rule: Rule, engine: Engine) -> Local | None:
        """How ``rule``'s checks run on ``engine``'s store here, or ``None``: the engine's way."""
        if events.listeners:
            return None
        found = self._runs.get(rule.id)
        if found is None or found[0] != DEFAULTS.version or found[1] is not engine or found[2] is not rule:
            found = (DEFAULTS.version, engine, rule, _build(config, spec, rule, engine))
            self._runs[rule.id] = found
        return found[3]


def _build(config: LimifyConfig, spec: AlgorithmSpec, rule: Rule, engine: Engine) -> Local | None:
    if not store_answers_alone(engine.settings):
        return None
    if stacked(config, rule) or len(rule.plans) != 1 or type(rule.cost) is not int:
        return None
    if spec.on_refusal is not None or spec.lease:
        return None
    store = engine.store
    if type(store) is not InMemoryAdapter:
        return None
    # build_keys' one-limit layout, limify:<rule>:<plan>:<type>:<value>: the identity's part is
    # added per request (a GlobalLimit's one key has none).
    shared_key = build_keys(rule, rule.plans, rule.shared, ("", ""))[0]
    part = None if rule.shared[0] else shared_key[: -len(":")]
    return Local(store.runner(spec, rule.plans[0], rule.cost), part, shared_key)


class Local(NamedTuple):
    """A rule's runner on an in-memory store, and what its keys start with."""

    run: Run
    #: ``limify:<rule>:<plan>:`` (``None`` for a GlobalLimit, whose key is ``shared_key``).
    part: str | None
    shared_key: str


def decide_locally(rule: Rule, identity: Identity, local: Local) -> Decision:
    """The decision of one request on ``rule``'s runner, recorded in the request scope."""
    part = local.part
    key = local.shared_key if part is None else f"{part}{encode_part(identity[0])}:{encode_part(identity[1])}"
    keys = (key,)
    step = local.run(key)
    plans = rule.plans
    result = LimitationResult(bool(step[0]), int(step[1]), plans[0].limit, step[2] / 1e6, step[3] / 1e6)
    decision = Decision(result, rule, plans, keys, scopes=(rule.id,))
    scope = current()
    if scope is not None:
        scope.add(decision)
    return decision
