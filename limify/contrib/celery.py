"""Celery: a refused task goes back to the broker with a countdown instead of failing.

Celery's own ``rate_limit`` task option counts per worker process. A
``@rate_limit`` on the task body, on Redis storage, is one limit for every
worker. Put it under ``@app.task``; ``key=`` names a task argument as usual (for
``bind=True`` tasks the key callable receives the task as ``self``)::

    @app.task(base=LimifyTask, limify_max_retries=50)
    @rate_limit("5/second", key="customer_id", storage="redis://localhost:6379/0")
    def send_invoice(customer_id: str) -> None: ...

Refused, the body raises :class:`~limify.RateLimitExceeded`. :class:`LimifyTask`
(a base class) or :func:`retry_when_limited` (a decorator, for tasks that need
another base class) turns that into ``task.retry(countdown=...)``: the worker
process is free at once and the broker hands the task back after the countdown.

Trade-offs, and what to choose:

* Keep ``on_exceeded="raise"`` (the default) on task bodies. ``"wait"`` sleeps
  inside the worker process, holding its slot for the whole wait.
* Countdowns are jittered. Every task refused at one instant is told the same
  ``retry_after``; retrying all of them at that instant admits one and refuses
  the rest again, round after round. A retry lands uniformly in
  ``[retry_after, retry_after * (1 + jitter * min(retries + 1, 16))]``: the
  spread grows with each retry, so a backlog thins out. More jitter means fewer
  broker round trips but more idle time under the limit; ``jitter=0`` retries
  exactly at ``retry_after``.
* A backlog costs retries: the last of 30 tasks queued at once behind one
  limit needs about 16, of 100 about 40, of 300 about 85 (simulated with the
  default jitter). Size ``max_retries`` for the bursts you enqueue; past it the
  task fails with the ``RateLimitExceeded``. Retries count in
  ``task.request.retries`` together with any other retries of the task.
* Retried tasks are held by a worker until their countdown ends (Celery's ETA
  handling). On the Redis broker, keep countdowns below the transport's
  ``visibility_timeout`` (one hour by default), or the broker delivers the task
  twice: a day-long quota exhausted in the morning is better checked before
  enqueueing.
* A ``RateLimitExceeded`` from anywhere in the body is retried, e.g. one from a
  rate-limited client (:mod:`limify.contrib.httpx` with ``on_exceeded="raise"``).
* Called directly (``task(...)``, not through a worker), the task raises the
  ``RateLimitExceeded`` like a plain function. Under ``task_always_eager`` or
  ``apply()``, Celery runs retries at once, ignoring the countdown.
* Celery runs sync task bodies. For async code, put ``@rate_limit`` on an
  ``async def`` helper and run it from a sync task (``asyncio.run(helper(...))``);
  its ``RateLimitExceeded`` reaches the task and is retried the same way.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, NoReturn

import wrapt

from limify._extras import missing_extra

try:
    from celery import Task, current_task
except ModuleNotFoundError as error:  # the extra is not installed
    raise missing_extra(__name__, "Celery", "celery", error) from error

from limify import events
from limify.errors import RateLimitExceeded

__all__ = ["LimifyTask", "retry_when_limited", "retry_countdown", "DEFAULT_MAX_RETRIES", "DEFAULT_JITTER"]

#: Retries allowed to a task refused by a limit before it fails.
DEFAULT_MAX_RETRIES = 50
#: Spread of retry countdowns, as a multiple of ``retry_after`` (see the module docs).
DEFAULT_JITTER = 1.0
#: The spread stops growing after this many retries.
SPREAD_GROWTH_CAP = 16


def _check(max_retries: Any, jitter: Any, owner: str) -> None:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(f"{owner}: max_retries must be an int >= 0, got {max_retries!r}")
    if max_retries < 0:
        raise ValueError(f"{owner}: max_retries must be an int >= 0, got {max_retries!r}")
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
        raise TypeError(f"{owner}: jitter must be a number >= 0, got {jitter!r}")
    if not (jitter >= 0 and math.isfinite(jitter)):
        raise ValueError(f"{owner}: jitter must be a finite number >= 0, got {jitter!r}")


def retry_countdown(
    retry_after: float, retries: int, jitter: float, draw: Callable[[], float] = random.random
) -> float:
    """Seconds before retry number ``retries + 1``: never before ``retry_after``.

    Uniform in ``[retry_after, retry_after * (1 + jitter * min(retries + 1, 16))]``;
    ``draw`` returns a number in ``[0, 1)``.
    """
    spread = retry_after * jitter * min(retries + 1, SPREAD_GROWTH_CAP)
    return retry_after + spread * draw()


def _retry(task: Any, exc: RateLimitExceeded, max_retries: int, jitter: float) -> NoReturn:
    countdown = retry_countdown(exc.retry_after, task.request.retries, jitter)
    # retry() raises Retry (or, past max_retries, `exc` itself); it never returns.
    raise task.retry(exc=exc, countdown=countdown, max_retries=max_retries)


class LimifyTask(Task):  # type: ignore[misc]  # celery ships no type hints
    """A Celery task base class that retries the task when a limit refuses it.

    Use it per task (``@app.task(base=LimifyTask)``) or for a whole app
    (``Celery(..., task_cls=LimifyTask)``). Task options tune it:

    ``limify_max_retries``
        retries allowed before the task fails with the ``RateLimitExceeded``
        (default :data:`DEFAULT_MAX_RETRIES`).
    ``limify_jitter``
        spread of the countdowns (default :data:`DEFAULT_JITTER`; see the module docs).
    """

    limify_max_retries: int = DEFAULT_MAX_RETRIES
    limify_jitter: float = DEFAULT_JITTER

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # app.task() builds a subclass holding the task options: check them there, early.
        super().__init_subclass__(**kwargs)
        _check(cls.limify_max_retries, cls.limify_jitter, cls.__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with events.source("celery"):  # decisions in the body report the Celery source
                return super().__call__(*args, **kwargs)
        except RateLimitExceeded as exc:
            _retry(self, exc, self.limify_max_retries, self.limify_jitter)


def retry_when_limited(
    max_retries: int = DEFAULT_MAX_RETRIES, jitter: float = DEFAULT_JITTER
) -> Callable[[Any], Any]:
    """Decorate a task body so a ``RateLimitExceeded`` retries the running task.

    Goes between ``@app.task`` and ``@rate_limit``; works with ``bind=True``::

        @app.task(bind=True)
        @retry_when_limited(max_retries=20)
        @rate_limit("5/second", key="account")
        def sync_account(self, account): ...

    Outside a task (a plain call) the exception propagates unchanged.
    """
    _check(max_retries, jitter, "retry_when_limited")

    @wrapt.decorator
    def retrying(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            if not current_task:
                return wrapped(*args, **kwargs)
            with events.source("celery"):
                return wrapped(*args, **kwargs)
        except RateLimitExceeded as exc:
            if not current_task:
                raise
            _retry(current_task, exc, max_retries, jitter)

    return retrying
