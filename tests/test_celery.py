"""@rate_limit on Celery task bodies, and limify.contrib.celery's retries, run in-process.

The real worker, broker and global limit are in tests/test_celery_worker.py; here
tasks run through Celery's tracer with ``apply()`` (where Celery runs retries at
once, so countdowns are observed through the ``task_retry`` signal).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, signals
from hypothesis import given
from hypothesis import strategies as st

from limify import InMemoryAdapter, ManualClock, RateLimitExceeded, rate_limit
from limify.contrib.celery import LimifyTask, retry_countdown, retry_when_limited


@pytest.fixture
def app() -> Iterator[Celery]:
    """A Celery app that never touches a broker (tasks run with apply() or direct calls).

    Tasks here are declared with shared=False: shared tasks would be added to every
    app finalized later in the session.
    """
    celery_app = Celery("limify-tests", set_as_current=False)
    yield celery_app
    celery_app.close()


@pytest.fixture
def countdowns() -> Iterator[list[float]]:
    """The countdown of every retry Celery schedules during the test."""
    seen: list[float] = []

    def record(sender: Any = None, reason: Any = None, **_: Any) -> None:
        seen.append(reason.when)

    signals.task_retry.connect(record, weak=False)
    yield seen
    signals.task_retry.disconnect(record)


def test_key_from_task_arguments(app: Celery, memory: InMemoryAdapter) -> None:
    """@app.task over @rate_limit(key=<param>): one bucket per argument value, by position or keyword."""

    @app.task(shared=False)
    @rate_limit("1/minute", key="tenant", storage=memory)
    def sync_tenant(tenant: str, full: bool = False) -> str:
        return tenant

    assert sync_tenant.apply(("acme",)).get() == "acme"
    assert sync_tenant.apply(kwargs={"tenant": "globex"}).get() == "globex"
    refused = sync_tenant.apply(kwargs={"tenant": "acme", "full": True})
    assert refused.failed() and isinstance(refused.result, RateLimitExceeded)
    with pytest.raises(RateLimitExceeded):
        sync_tenant("globex")  # a direct call runs the body in-process, limited the same way


def test_bound_task_key_callable_receives_the_task(app: Celery, memory: InMemoryAdapter) -> None:
    """With bind=True, a key callable gets the task as self, and key=<param> skips it."""
    seen: list[Any] = []

    def key(task: Any, tenant: str) -> str:
        seen.append(task)
        return tenant

    @app.task(shared=False, bind=True)
    @rate_limit("1/minute", key=key, storage=memory)
    def bound(self: Any, tenant: str) -> str:
        return f"{self.name}:{tenant}"

    @app.task(shared=False, bind=True)
    @rate_limit("1/minute", key="tenant", storage=memory)
    def by_name(self: Any, tenant: str) -> int:
        return int(self.request.retries)

    assert bound.apply(("acme",)).get() == f"{bound.name}:acme"
    assert seen == [bound]
    assert bound.apply(("globex",)).successful()
    assert bound.apply(("acme",)).failed()
    assert by_name.apply(("acme",)).get() == 0 and by_name.apply(("acme",)).failed()


def test_limify_task_retries_with_jittered_countdowns_then_fails(
    app: Celery, memory: InMemoryAdapter, countdowns: list[float]
) -> None:
    """A refused LimifyTask retries max_retries times, never sooner than retry_after, then fails."""
    attempts: list[int] = []

    @app.task(shared=False, base=LimifyTask, limify_max_retries=4)
    @rate_limit("1/minute", storage=memory)
    def job() -> None:
        attempts.append(1)

    assert job.apply().successful()
    result = job.apply()
    assert result.failed() and isinstance(result.result, RateLimitExceeded)
    assert len(countdowns) == 4
    for retries, countdown in enumerate(countdowns):
        assert 60.0 <= countdown <= 60.0 * (1 + (retries + 1))
    assert len(countdowns) == len(set(countdowns))  # jittered, not one instant for all
    assert attempts == [1]  # the refused body never ran


def test_limify_task_admitted_on_retry_succeeds(
    app: Celery, clock: ManualClock, countdowns: list[float]
) -> None:
    """A task refused once and admitted on its retry succeeds, with request.retries counting it."""
    memory = InMemoryAdapter(clock=clock)

    @signals.task_retry.connect(weak=False)
    def time_passes(**_: Any) -> None:
        clock.advance(countdowns[-1])

    @app.task(shared=False, bind=True, base=LimifyTask, limify_jitter=0)
    @rate_limit("1/minute", storage=memory)
    def job(self: Any) -> int:
        return int(self.request.retries)

    try:
        assert job.apply().get() == 0
        assert job.apply().get() == 1
    finally:
        signals.task_retry.disconnect(time_passes)
    assert countdowns == [60.0]  # jitter=0: exactly retry_after


def test_retry_when_limited_on_plain_and_bound_tasks(
    app: Celery, memory: InMemoryAdapter, countdowns: list[float]
) -> None:
    """The decorator form retries the running task, bound or not, up to its cap."""

    @app.task(shared=False)
    @retry_when_limited(max_retries=2)
    @rate_limit("1/minute", key="n", storage=memory)
    def plain(n: int) -> int:
        return n

    @app.task(shared=False, bind=True)
    @retry_when_limited(max_retries=3)
    @rate_limit("1/minute", key="n", storage=memory, name="bound")
    def bound(self: Any, n: int) -> int:
        return n

    assert plain.apply((1,)).get() == 1 and bound.apply((1,)).get() == 1
    assert isinstance(plain.apply((1,)).result, RateLimitExceeded)
    assert len(countdowns) == 2
    assert isinstance(bound.apply((1,)).result, RateLimitExceeded)
    assert len(countdowns) == 5 and min(countdowns) >= 60.0


def test_async_helper_refused_inside_a_sync_task_is_retried(
    app: Celery, memory: InMemoryAdapter, countdowns: list[float]
) -> None:
    """The documented async pattern: a limited async def under asyncio.run; a refusal retries the task."""
    import asyncio

    @rate_limit("1/minute", key="url", storage=memory)
    async def fetch(url: str) -> str:
        return url

    @app.task(shared=False, base=LimifyTask, limify_max_retries=1)
    def crawl(url: str) -> str:
        return asyncio.run(fetch(url))

    assert crawl.apply(("https://a.example",)).get() == "https://a.example"
    result = crawl.apply(("https://a.example",))
    assert isinstance(result.result, RateLimitExceeded) and len(countdowns) == 1


def test_outside_a_task_the_exception_propagates(app: Celery, memory: InMemoryAdapter) -> None:
    """Called directly, a LimifyTask or retry_when_limited body raises RateLimitExceeded, not Retry."""

    @app.task(shared=False, base=LimifyTask)
    @rate_limit("1/minute", storage=memory, name="direct")
    def job() -> str:
        return "done"

    @retry_when_limited()
    @rate_limit("1/minute", storage=memory, name="plain")
    def plain_function() -> str:
        return "done"

    assert job() == "done" and plain_function() == "done"
    with pytest.raises(RateLimitExceeded):
        job()
    with pytest.raises(RateLimitExceeded):
        plain_function()


def test_bad_retry_options_fail_early(app: Celery) -> None:
    """Bad max_retries/jitter raise when the task or decorator is created."""
    with pytest.raises(ValueError, match="max_retries"):
        retry_when_limited(max_retries=-1)
    with pytest.raises(TypeError, match="max_retries"):
        retry_when_limited(max_retries=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jitter"):
        retry_when_limited(jitter=float("nan"))

    def body() -> None: ...

    app.task(base=LimifyTask, limify_jitter="wide", shared=False)(body)
    with pytest.raises(TypeError, match="jitter"):
        app.finalize()  # builds the task classes declared so far


@given(
    retry_after=st.floats(min_value=1e-6, max_value=1e6),
    retries=st.integers(min_value=0, max_value=1000),
    jitter=st.floats(min_value=0, max_value=10),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_countdown_is_never_before_retry_after(
    retry_after: float, retries: int, jitter: float, draw: float
) -> None:
    """Every countdown lies in [retry_after, retry_after * (1 + jitter * min(retries + 1, 16))]."""
    countdown = retry_countdown(retry_after, retries, jitter, lambda: draw)
    assert retry_after <= countdown <= retry_after * (1 + jitter * min(retries + 1, 16)) * (1 + 1e-12)
