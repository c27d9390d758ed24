"""The limits one web request meets, collected while it runs, so its response describes one of them.

An adapter opens a :class:`RequestScope` for each request (the ASGI middleware,
the Flask extension, Django's middleware) and makes it current
(:func:`opened`, a context variable, so it follows the request into threads and
tasks it starts). Everything that decides during the request adds its
:class:`~limify.core.decision.Decision`: the config's rules, ``RateLimit``
dependencies, ``limit_view``, and the ``@rate_limit`` of the request's own
endpoint (only that one: a limit on an outbound client the view calls is not the
client's limit). The adapter then renders one set of headers, for
:func:`~limify.core.decision.most_restrictive` of them.

The scope also carries what the rest of the request must know: whether the
application-wide limits were already counted (they are counted once per request),
and whether the app's limits are switched off (``LIMIFY_ENABLED = False``), which
also lets the endpoint's own ``@rate_limit`` admit without counting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from limify.core.decision import Decision, most_restrictive
from limify.core.plan import Plan
from limify.core.result import LimitationResult

__all__ = ["RequestScope", "current", "opened", "enter", "leave"]

#: How deep :meth:`RequestScope.is_endpoint` looks through decorators (``__wrapped__``).
_UNWRAP_DEPTH = 8


class RequestScope:
    """One request's decisions (see the module docs).

    Args:
        endpoint: ``() -> the request's view callable`` (``None`` until routed), to
            tell the endpoint's own ``@rate_limit`` from others the view calls.
        enabled: ``False`` when the application's limits are switched off.
        asgi_scope: instead of ``endpoint``, the request's ASGI scope, whose
            ``"endpoint"`` the router sets.
    """

    __slots__ = ("decisions", "application_settled", "enabled", "_endpoint", "_asgi_scope")

    def __init__(
        self,
        endpoint: Callable[[], Any] | None = None,
        *,
        enabled: bool = True,
        asgi_scope: Mapping[str, Any] | None = None,
    ) -> None:
        self.decisions: list[Decision] = []
        #: Set once the application-wide limits were part of a check of this request.
        self.application_settled = False
        self.enabled = enabled
        self._endpoint = endpoint
        self._asgi_scope = asgi_scope

    def close(self) -> None:
        """End the request: forget how to find its endpoint.

        The ASGI middleware keeps the scope in the request's ASGI scope and finds the
        endpoint through that ASGI scope, a reference cycle; closing it at the end of the
        request lets the request's objects be freed at once instead of by the
        cyclic garbage collector.
        """
        self._endpoint = self._asgi_scope = None

    def add(self, decision: Decision) -> None:
        """Record a decision made for this request."""
        self.decisions.append(decision)

    def deciding(self) -> Decision | None:
        """The decision the response describes (see :func:`~limify.core.decision.most_restrictive`)."""
        return most_restrictive(self.decisions)

    def is_endpoint(self, limit: Any) -> bool:
        """Whether ``limit`` (a ``@rate_limit``'s :class:`~limify.core.function_limit.FunctionLimit`) is the endpoint's."""
        if self._endpoint is not None:
            found = self._endpoint()
        else:
            found = self._asgi_scope.get("endpoint") if self._asgi_scope is not None else None
        for _ in range(_UNWRAP_DEPTH):
            if found is None:
                return False
            handle = getattr(found, "rate_limit", None)
            if getattr(handle, "_limit", None) is limit:
                return True
            found = getattr(found, "__wrapped__", None)
        return False

    def endpoint_call(self, limit: Any, result: LimitationResult, plans: tuple[Plan, ...], key: str) -> None:
        """Record the endpoint's ``@rate_limit`` decision (other limits are ignored)."""
        if self.is_endpoint(limit):
            self.add(Decision(result, None, plans, (key,), scopes=(limit.scope,) * len(plans)))


_CURRENT: ContextVar[RequestScope | None] = ContextVar("limify_request_scope", default=None)


#: ``current()``: the scope of the request being served in this context, if an adapter
#: opened one (the context variable's own ``get``: no Python frame on hot paths).
current: Callable[[], RequestScope | None] = _CURRENT.get


@contextlib.contextmanager
def opened(scope: RequestScope) -> Iterator[RequestScope]:
    """Make ``scope`` current for the ``with`` block (the request's handling)."""
    token = _CURRENT.set(scope)
    try:
        yield scope
    finally:
        _CURRENT.reset(token)


def enter(scope: RequestScope) -> Any:
    """Make ``scope`` current until :func:`leave` (for frameworks with before/after hooks, like Flask)."""
    return _CURRENT.set(scope)


def leave(token: Any) -> None:
    """Undo the :func:`enter` that returned ``token``."""
    _CURRENT.reset(token)
