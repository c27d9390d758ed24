"""Retry policies gated off while Limify sends a script (see :mod:`limify.core.redis_sending`).

redis-py keeps a ``retry`` object on every connection and re-runs a failed send
through it. Limify wraps that object in a gate: for everyone else the wrapped
policy answers as configured; during Limify's own sends (:data:`SENDING` set in
this thread or task) the send runs once, so a script whose reply was lost is never
sent twice.
"""

from __future__ import annotations

import contextvars
import copy
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["SENDING", "Gate", "SyncGate", "AsyncGate", "gate_retry"]

#: True while Limify sends on a connection, in this thread or task.
SENDING: contextvars.ContextVar[bool] = contextvars.ContextVar("limify_sending", default=False)


class Gate:
    """A connection's retry policy, unchanged for everyone but Limify, off for Limify.

    Wraps the ``retry`` object redis-py keeps on each connection. Outside Limify's
    own sends every call goes to the wrapped policy, so the client's other commands
    behave exactly as configured; during them (``SENDING``), ``do`` runs once.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy protocols): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __deepcopy__(self, memo: dict[int, Any]) -> Gate:
        # Each new connection gets a copy of the pool's policy: keep the gate on it.
        return type(self)(copy.deepcopy(self.inner, memo))

    def __copy__(self) -> Gate:
        return type(self)(copy.copy(self.inner))

    def _handles(self, error: Exception) -> bool:
        """Whether the wrapped policy would call its failure callback for ``error``."""
        return isinstance(error, tuple(getattr(self.inner, "_supported_errors", ())))

    @staticmethod
    def _with_count(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        return bool(kwargs.get("with_failure_count", args[1] if len(args) > 1 else False))

    def __repr__(self) -> str:
        return f"<limify gate on {self.inner!r}>"


class SyncGate(Gate):
    __slots__ = ()

    def call_with_retry(
        self, do: Callable[[], Any], fail: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        if not SENDING.get():
            return self.inner.call_with_retry(do, fail, *args, **kwargs)
        try:
            return do()
        except Exception as error:
            if self._handles(error):
                fail(error, 1) if self._with_count(args, kwargs) else fail(error)
            raise


class AsyncGate(Gate):
    __slots__ = ()

    async def call_with_retry(
        self, do: Callable[[], Awaitable[Any]], fail: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        if not SENDING.get():
            return await self.inner.call_with_retry(do, fail, *args, **kwargs)
        try:
            return await do()
        except Exception as error:
            if self._handles(error):
                result = fail(error, 1) if self._with_count(args, kwargs) else fail(error)
                if inspect.isawaitable(result):
                    await result
            raise


def gate_retry(holder: Any, gate: type[Gate]) -> None:
    """Put ``gate`` around the ``retry`` of a connection, or of a pool's connection options."""
    if isinstance(holder, dict):
        retry = holder.get("retry")
        if retry is not None and not isinstance(retry, Gate):
            holder["retry"] = gate(retry)
        return
    retry = getattr(holder, "retry", None)
    if retry is not None and not isinstance(retry, Gate):
        holder.retry = gate(retry)
