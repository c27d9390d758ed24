"""Smoke test of the benchmark suite (``python -m benchmarks``): it runs and reports; no timing is judged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest
import redis

from benchmarks.limify_contenders import holds_leases
from benchmarks.run import _peer_notes
from limify.core.algorithms import ALGORITHMS
from tests.children import child_env

#: (printed report, JSON document) of one run.
Run = tuple[str, dict[str, Any]]
SECTIONS = ("memory_sync", "memory_async", "redis_sync", "redis_async")
#: The sections of the other stores (benchmarks/stores.py), run when their URLs are given.
STORES = ("postgres_sync", "postgres_async", "memcached_sync", "memcached_async")


@pytest.fixture(scope="module")
def quick_run(
    redis_server_url: str,
    postgres_server_url: str,
    memcached_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    """One ``--quick`` run against the test Redis: its printed report and its JSON document."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--redis-url",
        redis_server_url,
        "--json",
        str(out),
        "--postgres-url",
        postgres_server_url,
        "--memcached-url",
        memcached_server.url,
    ]
    if shutil.which("wrk") is None:
        pytest.fail("the benchmark's HTTP section needs wrk: apt-get install wrk (macOS: brew install wrk)")
    # Not in the checkout: `python -m` would put its limify/ first (see tests/children.py).
    done = subprocess.run(
        command, cwd=out.parent, env=child_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text(encoding="utf-8"))


def _limify_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["algorithm"], row["via"]): row for row in rows if row["kind"] == "limify"}


@pytest.mark.redis
@pytest.mark.slow
def test_every_latency_section_has_floors_and_every_limify_algorithm(quick_run: Run) -> None:
    """Each latency section times its floor and every registered algorithm (shell, decorated; both paths)."""
    _, document = quick_run
    assert set(document["latency"]) == {*SECTIONS, *STORES}
    for name in (*SECTIONS, *STORES):
        section = document["latency"][name]
        rows = {row["name"]: row for row in section["rows"]}
        floor = rows[section["floor"]]
        assert floor["allowed_ns"] > 0 and floor["rejected_ns"] > 0
        assert floor["allowed_ratio"] == pytest.approx(1.0)
        limify = _limify_rows(section["rows"])
        assert set(limify) == {(algorithm, via) for algorithm in ALGORITHMS for via in ("shell", "decorated")}
        for row in [*limify.values(), *(r for r in section["rows"] if r["kind"] == "floor")]:
            assert row["errors"] == [], (name, row["name"])
            assert row["unexpected_batches"] == 0, (name, row["name"])
            assert row["allowed_ns"] > 0 and row["allowed_ratio"] > 0
        for (algorithm, via), row in limify.items():
            if via == "shell" or not holds_leases(ALGORITHMS[algorithm][0]):
                assert row["rejected_ns"] > 0 and row["rejected_ratio"] > 0


@pytest.mark.redis
@pytest.mark.slow
def test_peers_are_measured_when_installed_and_named_when_not(quick_run: Run) -> None:
    """Installed peers get rows without errors in every section; missing ones are named in the report."""
    stdout, document = quick_run
    used = set(document["peers"]["used"])
    for name in SECTIONS:
        kinds = {row["kind"] for row in document["latency"][name]["rows"]}
        assert kinds - {"floor", "limify"} == used
        for row in document["latency"][name]["rows"]:
            assert row["errors"] == [], (name, row["name"])
    missing = {"limits", "pyrate-limiter", "throttled-py"} - used
    if missing:
        assert "not installed: " + ", ".join(sorted(missing)) in stdout


@pytest.mark.redis
@pytest.mark.slow
def test_throughput_and_memory_sections_are_complete(quick_run: Run) -> None:
    """Throughput has the naive floor and every Limify algorithm; memory per key covers every algorithm."""
    _, document = quick_run
    throughput = document["throughput"]
    assert throughput["tasks"] == 100
    rows = {row["name"]: row for row in throughput["rows"]}
    assert rows[throughput["floor"]]["ops_per_s"] > 0
    limify = _limify_rows(throughput["rows"])
    assert {algorithm for algorithm, _ in limify} == set(ALGORITHMS)
    assert all(row["ops_per_s"] > 0 and not row["errors"] for row in limify.values())
    memory = document["memory_per_key"]
    in_process = {row["algorithm"]: row for row in memory["in_process"] if row["algorithm"]}
    in_redis = {row["algorithm"]: row for row in memory["redis"] if row["algorithm"]}
    assert set(in_process) == set(in_redis) == set(ALGORITHMS)
    assert all(row["error"] is None for row in [*memory["in_process"], *memory["redis"]])
    assert all(row["bytes_per_key"] > 0 for row in in_process.values())
    assert all(row["memory_usage_bytes"] > 0 for row in in_redis.values())
    assert all(row["keys_found"] == row["keys_sampled"] for row in in_redis.values())


@pytest.mark.redis
@pytest.mark.slow
def test_report_describes_the_machine_prints_tables_and_leaves_no_keys(
    quick_run: Run, redis_server_url: str
) -> None:
    """The JSON describes the machine, stdout has every table, and the run's keys are gone afterwards."""
    stdout, document = quick_run
    info = document["machine"]
    assert info["cpu_count"] >= 1 and info["cpu_model"] and info["python"].startswith("CPython")
    assert info["redis_server"] and info["packages"]["limify"] and info["packages"]["redis"]
    titles = ("In memory, sync", "In memory, async", "Redis, sync", "Redis, async", "throughput")
    for title in (*titles, "PostgreSQL, sync", "PostgreSQL, async", "Memcached, sync", "Memcached, async"):
        assert title in stdout
    assert "limify token_bucket (@rate_limit)" in stdout and "Memory per idle key" in stdout
    client = redis.Redis.from_url(redis_server_url)
    try:
        assert list(client.scan_iter(match=f"*{document['key_tag']}*")) == []
    finally:
        client.close()


def test_missing_peers_leave_limify_and_floors_and_say_so() -> None:
    """Without the peers installed, none is measured and the report names the missing ones."""
    used, notes = _peer_notes(
        {"limits": None, "pyrate-limiter": "4.5.1", "throttled-py": None}, use_peers=True
    )
    assert used == {"pyrate-limiter"}
    assert any("not installed: limits, throttled-py" in note and ".[bench]" in note for note in notes)


@pytest.mark.redis
@pytest.mark.slow
def test_http_section_serves_every_contender_on_both_stores(quick_run: Run) -> None:
    """wrk drove every app: Limify's three set-ups and the installed peers, on memory and on Redis,
    allowed (all admitted), refused (all 429) and the middleware's unmatched route, with latencies;
    and the apps without a limit: in memory, and with one Redis PING per request."""
    stdout, document = quick_run
    section = document["http"]
    rows = {(row["contender"], row["store"], row["path"]): row for row in section["rows"]}
    expected = {("baseline", "memory", "allowed"), ("baseline", "redis", "allowed")}
    contenders = ["limify-middleware", "limify-dependency", "limify-decorator"]
    contenders += [name for name, version in section["server"]["peers"].items() if version]
    for store in ("memory", "redis"):
        expected |= {(name, store, path) for name in contenders for path in ("allowed", "refused")}
        expected.add(("limify-middleware", store, "unmatched"))
    assert set(rows) == expected
    for key, row in rows.items():
        assert row["errors"] == [] and row["unexpected"] == 0, key
        assert row["requests_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"] <= row["p999_ms"], key
        assert len(row["gc_collections_per_10k"]) == 3, key
    assert "HTTP load: wrk -t2 -c32" in stdout
