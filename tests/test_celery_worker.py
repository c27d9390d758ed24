"""A real Celery worker (prefork, 2 processes) on a real redis-server: one global limit for all."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from tests.children import child_env
from tests.servers import RedisServer, stop_process_group

TASKS = 30
#: Generous bounds: 30 tasks at 5/s need 6 s; retries with jitter add a few more.
RESULT_TIMEOUT = 90.0


@pytest.fixture
def private_redis(doomed_redis: RedisServer) -> str:
    """A redis-server of this test's own: broker, result backend and limit storage at once."""
    return doomed_redis.url


@pytest.fixture
def worker(private_redis: str, tmp_path: Path) -> Iterator[Path]:
    """`celery worker --pool prefork --concurrency 2` on tests/celery_app.py; always stopped."""
    log = tmp_path / "worker.log"
    env = child_env(LIMIFY_CELERY_TEST_REDIS_URL=private_redis)
    command = [
        sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
        "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", "limify-test@%h",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield log
    finally:
        stop_process_group(process)  # warm shutdown first, then the worker and its pool children


def windows_over(starts: list[float], limit: int, width: float = 1.0) -> list[list[float]]:
    """Every half-open window ``[t, t + width)`` opening at a start and holding more than ``limit``."""
    starts = sorted(starts)
    return [
        [t for t in starts if first <= t < first + width]
        for first in starts
        if sum(first <= t < first + width for t in starts) > limit
    ]


@pytest.mark.slow
@pytest.mark.redis
def test_thirty_tasks_on_two_worker_processes_respect_one_global_limit(
    private_redis: str, worker: Path
) -> None:
    """30 tasks, 2 worker processes, 5/second global: all complete, retried, never 6 starts in a second."""
    client_app = Celery(
        "limify-test-client", broker=private_redis, backend=private_redis, set_as_current=False
    )
    names = ("tests.celery_app.limited_by_base_class", "tests.celery_app.limited_by_decorator")
    results: list[Any] = []
    try:
        results = [
            client_app.send_task(names[index % 2], args=("acme", index), serializer="json")
            for index in range(TASKS)
        ]
        deadline = time.monotonic() + RESULT_TIMEOUT
        values = [result.get(timeout=max(0.1, deadline - time.monotonic())) for result in results]
    except Exception as exc:
        log = worker.read_text(errors="replace")[-4000:]
        raise AssertionError(
            f"tasks did not all complete: {exc!r}\n--- worker log (tail) ---\n{log}"
        ) from exc
    finally:
        # AsyncResult.__del__ unsubscribes through the backend: run it now, while the server
        # answers (Celery 5.5.0 raises from __del__, in whatever test runs later, once it is gone).
        results.clear()
        gc.collect()
        client_app.close()
    assert values == list(range(TASKS))

    client = redis.Redis.from_url(private_redis)
    records = [line.decode().split() for line in client.lrange("limify-test:starts", 0, -1)]
    client.close()
    indexes = sorted(int(index) for index, _, _ in records)
    assert indexes == list(range(TASKS))  # each body ran once: none lost, none run twice
    retries = [int(count) for _, count, _ in records]
    assert sum(retries) > 0 and max(retries) <= 200  # refused tasks went back to the broker
    starts = [float(stamp) for _, _, stamp in records]
    assert windows_over(starts, limit=5) == []
    # Any 6 consecutive starts span at least a second, so 30 starts span at least 5.
    assert max(starts) - min(starts) >= (TASKS // 5 - 1) * 1.0 - 1e-6
