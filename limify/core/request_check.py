"""From one request to its Check: identity, plans, stacked application limits, penalty, cost, keys.

Stacking
--------
The config's ``application_limits`` count every request that is not exempt, per
identity across routes. They are not a second check: they join the route's rule
in one :class:`~limify.core.check.Check` (the route's plans, then the
application's, then a penalty's), which every store runs all-or-nothing, so a
request refused by either consumes neither. All keys of one check must share a
Redis Cluster hash slot, so a stacked check uses
:func:`~limify.core.keys.stacked_keys`, tagged by the identity:
``limify:{user:42}:items:default.60s`` beside ``limify:{user:42}:*app:default.3600s``
(with a ``GlobalLimit`` among them, every key takes the shared tag ``{*}``). They
run under the rule's algorithm and cost; a request no rule matches is checked
against the application limits alone, under the limiter's algorithm. A check
without application limits or penalty keeps the rule's own key layout
(:func:`~limify.core.limiter.build_keys`).

Penalty
-------
The rule's ``penalty``, else the config's, is one more limit of the check (see
:mod:`limify.core.algorithms.penalty`), keyed under the rule (a rule's own) or
under :data:`~limify.core.decision.APPLICATION` (the config's, one per identity
across routes), plan part ``*penalty``.

Identity
--------
The rule's ``key=`` (:mod:`limify.core.rule_hooks`), else the limiter's
``key_resolver``, else the context's own priority (user, org, API key, IP). An
IPv6 client address is counted by its ``/ipv6_prefix`` network
(``ip:2001:db8:1:2::/64``), so one subscriber's /64 is one bucket.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

from limify.core.algorithms.base import AlgorithmSpec, Outcome, check_cost
from limify.core.algorithms.penalty import Penalty, PenaltyPlan, penalized
from limify.core.check import Check
from limify.core.context import Identity, RequestContext
from limify.core.decision import APPLICATION
from limify.core.keys import encode_part, limit_keys, stacked_keys
from limify.core.plan import Plan
from limify.core.plans import plans as plan_registry
from limify.core.result import LimitationResult
from limify.core.rule_hooks import request_of
from limify.core.rules import LimifyConfig, Rule

__all__ = [
    "Layout", "build_keys", "limits_of", "grouped_ip", "identity_of", "prepare", "stacked", "layout",
    "result_of", "PENALTY_PART", "shared_layout",
]  # fmt: skip

#: The plan part of a penalty's key (``*`` never appears in an encoded plan id).
PENALTY_PART = "*penalty"


class Layout(NamedTuple):
    """How a request's check is laid out: what its plans are, in order."""

    rule: Rule | None
    #: How many of the check's plans are application-wide (after the rule's).
    application: int
    #: Whether the last plan is a penalty.
    penalty: bool

    def scopes(self, check: Check) -> tuple[str, ...]:
        """Where each counted plan comes from: the rule's id or :data:`APPLICATION` (penalty left out)."""
        route = len(check.plans) - self.application - self.penalty
        rule_id = self.rule.id if self.rule is not None else APPLICATION
        return (rule_id,) * route + (APPLICATION,) * self.application

    def counted(self, check: Check) -> tuple[Plan, ...]:
        """The check's plans without its penalty."""
        return check.plans[:-1] if self.penalty else check.plans


def build_keys(
    rule: Rule, plans: Sequence[Plan], shared: Sequence[bool], identity: Identity
) -> tuple[str, ...]:
    """The storage keys of a rule's own check, without application limits or penalty."""
    identity_type, identity_value = identity
    return limit_keys(
        encode_part(rule.id),
        [encode_part(plan.id) for plan in plans],
        [plan.period_us for plan in plans],
        shared,
        f"{encode_part(identity_type)}:{encode_part(identity_value)}",
    )


def limits_of(found: Any, rule: Rule) -> tuple[tuple[Plan, ...], tuple[bool, ...]]:
    """The rule's plans of one check and which are shared: the provider's, plus the rule's global limits."""
    if inspect.iscoroutine(found):
        found.close()
        raise TypeError(
            f"rule {rule.id!r}: an async plan provider needs the async limiter (Limify.async_limiter)"
        )
    if found is None:
        return rule.plans, rule.shared
    if isinstance(found, str):
        found = plan_registry.plan_for(found)
    if isinstance(found, Plan):
        chosen: tuple[Plan, ...] = (found,)
    elif isinstance(found, Sequence) and found and all(isinstance(plan, Plan) for plan in found):
        chosen = tuple(found)
    else:
        raise TypeError(
            f"plan provider returned {found!r} for rule {rule.id!r}; "
            "expected a Plan, a plan name, a list of plans or None"
        )
    # The provider's plans replace the per-identity limits; global ones stay.
    kept = tuple(plan for plan, shared in zip(rule.plans, rule.shared, strict=True) if shared)
    return chosen + kept, (False,) * len(chosen) + (True,) * len(kept)


@functools.lru_cache(maxsize=4096)
def grouped_ip(value: str, prefix: int) -> str:
    """An IPv6 address as its ``/prefix`` network (``"2001:db8::/64"``); anything else as it is."""
    if ":" not in value or prefix >= 128:
        return value
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return value
    return str(ipaddress.IPv6Network((address, prefix), strict=False))


def identity_of(
    context: RequestContext,
    rule: Rule | None,
    key_resolver: Callable[[RequestContext], Any] | None,
    ipv6_prefix: int,
) -> Identity:
    """The identity a request is counted under (see the module docs)."""
    found = rule.identity_of(context) if rule is not None and rule.identity_of is not None else None
    if found is None and key_resolver is not None:
        found = key_resolver(context)
        if found is not None and not (
            isinstance(found, tuple) and len(found) == 2 and isinstance(found[0], str) and found[0]
        ):
            raise TypeError(f"key_resolver must return (identity_type, value) or None, got {found!r}")
    if found is None:
        found = context.identity()
    if found[0] == "ip" and isinstance(found[1], str):
        return "ip", grouped_ip(found[1], ipv6_prefix)
    return found


def _cost(rule: Rule | None, context: RequestContext, plans: Sequence[Plan]) -> int:
    cost = 1 if rule is None else rule.cost
    if callable(cost):
        cost = cost(request_of(context))
        check_cost(cost, plans, f"rule {rule.id!r}: the cost callable's result")  # type: ignore[union-attr]
    return cost


def prepare(
    config: LimifyConfig,
    spec: AlgorithmSpec,
    rule: Rule | None,
    context: RequestContext,
    identity: Identity,
    *,
    application: bool,
    found: Any = None,
    provided: bool = False,
    cost: int | None = None,
) -> Check:
    """The Check of one request under ``rule`` (and the application limits when ``application``).

    ``found`` is the plan provider's answer when ``provided``; its plans are checked
    here (the rule's own ones were checked when it was built). ``cost`` replaces
    the rule's (peeking at a rule whose cost is a callable).
    """
    route, shared = limits_of(found, rule) if rule is not None else ((), ())
    if provided:
        spec.check_plans(route)
    app_plans = config.application_plans if application else ()
    counted = route + app_plans
    if cost is None:
        cost = _cost(rule, context, counted)
    if provided or app_plans:
        check_cost(cost, counted)
    penalty = penalty_of(config, rule)
    if not stacked(config, rule):
        assert rule is not None
        return Check(spec, build_keys(rule, route, shared, identity), route, cost)
    rule_part = encode_part(rule.id) if rule is not None else APPLICATION
    scopes = [rule_part] * len(route) + [APPLICATION] * len(app_plans)
    parts = [encode_part(plan.id) for plan in counted]
    all_shared = [*shared, *config.application_shared]
    plans: tuple[Plan, ...] = counted
    if penalty is not None:
        scopes.append(rule_part if rule is not None and rule.penalty is not None else APPLICATION)
        parts.append(PENALTY_PART)
        all_shared.append(False)
        plans = (*counted, penalty.plan)
        spec = penalized(spec)
    identity_type, identity_value = identity
    text = f"{encode_part(identity_type)}:{encode_part(identity_value)}"
    keys = stacked_keys(scopes, parts, [plan.period_us for plan in plans], all_shared, text)
    return Check(spec, keys, plans, cost)


def penalty_of(config: LimifyConfig, rule: Rule | None) -> Penalty | None:
    """The penalty of ``rule``'s checks: its own, else the config's."""
    if rule is not None and rule.penalty is not None:
        return cast(Penalty, rule.penalty)  # a Penalty once the rule is built
    return config.penalty


def stacked(config: LimifyConfig, rule: Rule | None) -> bool:
    """Whether ``rule``'s checks use the stacked key layout: always, once the config stacks anything on it.

    Decided by the config, not by the check, so a rule's keys are the same whether
    or not one check of it carries the application limits (see :func:`prepare`).
    """
    return (
        bool(config.application_plans)
        or config.penalty is not None
        or (rule is not None and rule.penalty is not None)
    )


def shared_layout(config: LimifyConfig, rule: Rule | None) -> tuple[bool, ...]:
    """For each limit of ``rule``'s checks, whether its state is shared beyond the rule's identity
    (a ``GlobalLimit``, an application-wide limit, the config's penalty): what
    :meth:`~limify.core.engine.Engine.check_layout` shows the store."""
    own = rule.shared if rule is not None else ()
    if not stacked(config, rule):
        return own
    penalty = () if penalty_of(config, rule) is None else (rule is None or rule.penalty is None,)
    return (*own, *(True,) * len(config.application_plans), *penalty)


def layout(config: LimifyConfig, rule: Rule | None, application: bool) -> Layout:
    """The :class:`Layout` :func:`prepare` gives a check of ``rule``."""
    penalty = penalty_of(config, rule)
    return Layout(rule, len(config.application_plans) if application else 0, penalty is not None)


def result_of(outcome: Outcome, check: Check, shape: Layout) -> LimitationResult:
    """The public result of a request's outcome; a block reports the smallest counted limit as its limit."""
    plan = check.plans[outcome[4]]
    limit = (
        min((p.limit for p in shape.counted(check)), default=plan.limit)
        if type(plan) is PenaltyPlan
        else plan.limit
    )
    return LimitationResult(bool(outcome[0]), int(outcome[1]), limit, outcome[2] / 1e6, outcome[3] / 1e6)
