"""The Celery app a real worker runs in tests/test_celery_worker.py.

Broker, result backend and the limit's storage are the one Redis named by
``LIMIFY_CELERY_TEST_REDIS_URL``. Two tasks share one global limit (same name,
plan and key): "5/second" on the exact sliding log, so that no one-second
window can hold more than five starts.

Each start is recorded in Redis, stamped with the instant the limit admitted it:
the storage runs on the workers' clock (``clock=`` on the adapter), which
remembers the ``now`` it gave each check. A stamp taken later in the body would
add scheduling noise of tens of milliseconds on a busy machine, enough to blur
starts 0.2 s apart.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from celery import Celery

from limify import rate_limit
from limify.contrib.celery import LimifyTask, retry_when_limited
from limify.core.redis_adapter import RedisSyncAdapter

REDIS_URL = os.environ["LIMIFY_CELERY_TEST_REDIS_URL"]
STARTS = "limify-test:starts"
FIVE_PER_SECOND = "5/second"
LIMIT_NAME = "tests.celery.shared"

app = Celery("tests.celery_app", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


class AdmissionClock:
    """The system clock, remembering (per thread) the time it told the last check."""

    def __init__(self) -> None:
        self._told = threading.local()

    def now_us(self) -> int:
        now = time.time_ns() // 1000
        self._told.now = now
        return now

    def last_us(self) -> int:
        return int(self._told.now)


CLOCK = AdmissionClock()
# Built before the worker forks; redis-py opens connections per process, after the fork.
STORAGE = RedisSyncAdapter.from_url(REDIS_URL, clock=CLOCK)
_client: redis.Redis | None = None


def record_start(index: int, retries: int) -> None:
    """Push ``index retries admitted_at`` (seconds) for the test to read."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(REDIS_URL)
    admitted = CLOCK.last_us()
    _client.rpush(STARTS, f"{index} {retries} {admitted // 1_000_000}.{admitted % 1_000_000:06d}")


@app.task(bind=True, base=LimifyTask, limify_max_retries=200)
@rate_limit(FIVE_PER_SECOND, algorithm="sliding_log", key="tenant", storage=STORAGE, name=LIMIT_NAME)
def limited_by_base_class(self: Any, tenant: str, index: int) -> int:
    record_start(index, self.request.retries)
    return index


@app.task(bind=True)
@retry_when_limited(max_retries=200)
@rate_limit(FIVE_PER_SECOND, algorithm="sliding_log", key="tenant", storage=STORAGE, name=LIMIT_NAME)
def limited_by_decorator(self: Any, tenant: str, index: int) -> int:
    record_start(index, self.request.retries)
    return index
