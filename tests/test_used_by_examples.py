"""The used-by examples run as their docstrings say: outbound clients, transports, Celery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.children import child_env, script
from tests.servers import RedisServer, stop_process_group

ROOT = Path(__file__).resolve().parent.parent


def run_example(*args: str, env: dict[str, str] | None = None) -> str:
    """Run ``python <args>`` from the repository root (as README.rst does); its output, once it succeeded."""
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env or child_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_outbound_client_example_waits_and_refuses_beyond_max_wait() -> None:
    """examples/outbound_client.py: 5 sync and 5 async quotes, then a refusal past max_wait."""
    output = run_example("examples/outbound_client.py")
    assert output.count("'price': 101.5") == 10
    assert "refused at once" in output


@pytest.mark.slow
def test_outbound_transports_example_waits_out_each_429() -> None:
    """examples/outbound_transports.py: each client meets one 429, then succeeds after the pause."""
    lines = [line.split() for line in run_example("examples/outbound_transports.py").splitlines()]
    statuses = [line[-1] for line in lines if line[0] == "GET"]
    assert statuses == ["200", "200", "200", "429", "200"] * 3
    waits = [float(line[1].rstrip("s")) for line in lines if line[0] == "GET"]
    assert all(waits[i + 4] - waits[i + 3] >= 0.99 for i in (0, 5, 10))  # printed to 0.01 s


@pytest.mark.slow
@pytest.mark.redis
def test_celery_example_runs_with_a_worker(tmp_path: Path, doomed_redis: RedisServer) -> None:
    """examples/celery_app.py: a worker started as documented runs the 12 enqueued invoices."""
    env = child_env(LIMIFY_REDIS_URL=doomed_redis.url)
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [script("celery"), "--workdir", "examples", "-A", "celery_app", "worker",
             "--concurrency", "2", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        output = run_example("examples/celery_app.py", env=env)
    finally:
        stop_process_group(worker)
    assert output.count("invoice") == 13  # the heading and 12 runs
